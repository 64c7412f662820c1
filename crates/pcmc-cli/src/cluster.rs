//! `pcmc cluster scheduler` and `pcmc cluster executor`: pcmc's Apache
//! DataFusion Ballista processes, which know pcmc's operators and functions
//! (the stock Ballista binaries cannot run them). Built with the cargo
//! feature `ballista`.

use anyhow::Result;
use clap::Subcommand;
use std::path::PathBuf;

/// The cluster processes.
#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Run a scheduler: drivers (`pcmc run --scheduler df://HOST:PORT`)
    /// submit jobs here; executors register here. Stops on SIGTERM/SIGINT.
    Scheduler {
        /// Address to listen on (0.0.0.0:PORT for every interface).
        #[arg(long, default_value = "127.0.0.1:50050")]
        bind: String,
        /// Seconds without a heartbeat after which an executor counts as
        /// lost and its tasks run elsewhere.
        #[arg(long, default_value_t = 30)]
        executor_timeout: u64,
        /// Failed attempts of one task before its job fails (the driver then
        /// submits the job again, a bounded number of times).
        #[arg(long, default_value_t = 4)]
        task_max_failures: usize,
    },
    /// Run an executor that takes tasks from a scheduler. Stops on
    /// SIGTERM/SIGINT.
    Executor {
        /// The scheduler, HOST:PORT (or df://HOST:PORT).
        #[arg(long)]
        scheduler: String,
        /// Address to listen on for Arrow Flight (results); the gRPC port
        /// is `--grpc-port`.
        #[arg(long, default_value = "127.0.0.1:50051")]
        bind: String,
        /// Port for tasks from the scheduler (default: the Flight port + 1).
        #[arg(long)]
        grpc_port: Option<u16>,
        /// Host name the scheduler and drivers use to reach this executor
        /// (default: the --bind host, or this machine's name when binding
        /// 0.0.0.0).
        #[arg(long)]
        advertise: Option<String>,
        /// Ballista's scratch directory (default: a temporary directory).
        /// Particles live in the driver's work directory, not here.
        #[arg(long)]
        work_dir: Option<PathBuf>,
        /// Tasks run at once.
        #[arg(long, default_value_t = 1)]
        slots: usize,
        /// Seconds between heartbeats to the scheduler.
        #[arg(long, default_value_t = 5)]
        heartbeat: u64,
        /// Seconds to wait for the scheduler at start before giving up.
        #[arg(long, default_value_t = 30)]
        connect_timeout: u64,
    },
    /// Wait until a number of executors take tasks from a scheduler (for
    /// batch scripts: start the cluster, wait, then run). Exits 0 when they
    /// do, 1 after the timeout.
    Wait {
        /// The scheduler, HOST:PORT (or df://HOST:PORT).
        #[arg(long)]
        scheduler: String,
        /// Executors to wait for.
        #[arg(long, default_value_t = 1)]
        executors: usize,
        /// Seconds to wait at most.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
}

/// Runs a cluster process until it is stopped.
///
/// # Errors
/// Input errors (exit 2) for bad addresses or an unreachable scheduler;
/// other failures exit 1.
#[cfg(feature = "ballista")]
pub fn run(cmd: ClusterCommand) -> Result<()> {
    use crate::error::InputError;
    use pcmc_ballista::cluster::{
        ClusterError, ExecutorOptions, SchedulerOptions, parse_bind, serve_executor,
        serve_scheduler,
    };
    let to_anyhow = |flag: &str, e: ClusterError| -> anyhow::Error {
        match e {
            ClusterError::Input(m) => InputError::flag(flag, m).into(),
            ClusterError::Failed(m) => anyhow::anyhow!(m),
        }
    };
    match cmd {
        ClusterCommand::Scheduler {
            bind,
            executor_timeout,
            task_max_failures,
        } => {
            let bind = parse_bind("--bind", &bind).map_err(|e| to_anyhow("--bind", e))?;
            serve_scheduler(SchedulerOptions {
                bind,
                executor_timeout,
                task_max_failures,
            })
            .map_err(|e| to_anyhow("cluster scheduler", e))
        }
        ClusterCommand::Wait {
            scheduler,
            executors,
            timeout,
        } => {
            pcmc_ballista::driver::parse_scheduler(&scheduler)
                .map_err(|e| InputError::flag("--scheduler", e.to_string()))?;
            if executors == 0 {
                return Err(InputError::flag("--executors", "must be at least 1").into());
            }
            let n = pcmc_ballista::driver::wait_for_executors(
                &scheduler,
                executors,
                std::time::Duration::from_secs(timeout),
            )?;
            println!("{n} executor(s) ready at {scheduler}");
            Ok(())
        }
        ClusterCommand::Executor {
            scheduler,
            bind,
            grpc_port,
            advertise,
            work_dir,
            slots,
            heartbeat,
            connect_timeout,
        } => {
            let (host, port) = pcmc_ballista::driver::parse_scheduler(&scheduler)
                .map_err(|e| InputError::flag("--scheduler", e.to_string()))?;
            let addr = parse_bind("--bind", &bind).map_err(|e| to_anyhow("--bind", e))?;
            let grpc_port = match grpc_port {
                Some(p) => p,
                None => addr.port().checked_add(1).ok_or_else(|| {
                    InputError::flag("--grpc-port", "the Flight port is 65535: give --grpc-port")
                })?,
            };
            let advertise = advertise.unwrap_or_else(|| {
                if addr.ip().is_unspecified() {
                    std::fs::read_to_string("/proc/sys/kernel/hostname")
                        .map(|h| h.trim().to_string())
                        .unwrap_or_else(|_| "localhost".into())
                } else {
                    addr.ip().to_string()
                }
            });
            if slots == 0 {
                return Err(InputError::flag("--slots", "must be at least 1").into());
            }
            serve_executor(ExecutorOptions {
                scheduler_host: host,
                scheduler_port: port,
                bind_host: addr.ip().to_string(),
                advertise,
                port: addr.port(),
                grpc_port,
                work_dir,
                slots,
                heartbeat,
                connect_timeout: std::time::Duration::from_secs(connect_timeout),
            })
            .map_err(|e| to_anyhow("cluster executor", e))
        }
    }
}

/// Without the `ballista` feature: an input error saying how to build it.
///
/// # Errors
/// Always.
#[cfg(not(feature = "ballista"))]
pub fn run(cmd: ClusterCommand) -> Result<()> {
    let _ = cmd;
    Err(crate::error::InputError::flag(
        "cluster",
        "pcmc's Ballista cluster processes are not compiled into this pcmc: build it with the cargo feature `ballista` \
         (cargo build --release -p pcmc-cli --features ballista)",
    )
    .into())
}

/// A Ballista cluster of pcmc processes on this machine (127.0.0.1, ports
/// chosen free at start): a scheduler and executors with one slot each, for
/// `pcmc bench compare --executors ballista` and the tests. Every process
/// is stopped when it is dropped; logs go to files in its directory.
pub struct LocalCluster {
    exe: PathBuf,
    dir: PathBuf,
    port: u16,
    scheduler: LocalProcess,
    executors: Vec<LocalProcess>,
    started: usize,
}

/// A child process of a [`LocalCluster`], killed when dropped.
pub struct LocalProcess {
    child: std::process::Child,
    log: PathBuf,
}

impl LocalProcess {
    fn spawn(mut cmd: std::process::Command, log: PathBuf) -> Result<LocalProcess> {
        let f = std::fs::File::create(&log)?;
        let child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::from(f))
            .spawn()?;
        Ok(LocalProcess { child, log })
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The exit status once the process has ended, polling at most `limit`.
    pub fn wait_exit(&mut self, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
        let start = std::time::Instant::now();
        loop {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            if start.elapsed() > limit {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// What the process wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for LocalProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP port free on 127.0.0.1 at the moment of the call.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl LocalCluster {
    /// Starts a scheduler on a free port and `executors` executors, and
    /// waits until they take tasks.
    ///
    /// # Errors
    /// Processes that cannot start or executors that do not come up in 120 s.
    pub fn start(exe: &std::path::Path, dir: &std::path::Path, executors: usize) -> Result<Self> {
        Self::start_on(exe, dir, free_port()?, executors)
    }

    /// As [`LocalCluster::start`], with the scheduler on `port`.
    ///
    /// # Errors
    /// As [`LocalCluster::start`].
    pub fn start_on(
        exe: &std::path::Path,
        dir: &std::path::Path,
        port: u16,
        executors: usize,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let n = std::fs::read_dir(dir).map_or(0, |d| d.count());
        let mut cmd = std::process::Command::new(exe);
        cmd.args(["cluster", "scheduler", "--bind"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["--executor-timeout", "4"]);
        let scheduler = LocalProcess::spawn(cmd, dir.join(format!("scheduler-{n}.log")))?;
        let mut c = LocalCluster {
            exe: exe.to_path_buf(),
            dir: dir.to_path_buf(),
            port,
            scheduler,
            executors: Vec::new(),
            started: n,
        };
        for _ in 0..executors {
            c.add_executor()?;
        }
        c.wait(executors)?;
        Ok(c)
    }

    /// The scheduler's address, `df://127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("df://127.0.0.1:{}", self.port)
    }

    /// The scheduler's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The scheduler process.
    pub fn scheduler(&mut self) -> &mut LocalProcess {
        &mut self.scheduler
    }

    /// The executor processes, in start order.
    pub fn executors(&mut self) -> &mut Vec<LocalProcess> {
        &mut self.executors
    }

    /// Starts one more executor (one slot, heartbeat every second); does not
    /// wait for it.
    ///
    /// # Errors
    /// No free port or the process cannot start.
    pub fn add_executor(&mut self) -> Result<()> {
        let (flight, grpc) = (free_port()?, free_port()?);
        self.started += 1;
        let mut cmd = std::process::Command::new(&self.exe);
        cmd.args(["cluster", "executor", "--scheduler"])
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--bind")
            .arg(format!("127.0.0.1:{flight}"))
            .args(["--grpc-port", &grpc.to_string()])
            .args(["--slots", "1", "--heartbeat", "1"])
            .arg("--work-dir")
            .arg(self.dir.join(format!("executor-{}", self.started)));
        let log = self.dir.join(format!("executor-{}.log", self.started));
        self.executors.push(LocalProcess::spawn(cmd, log)?);
        Ok(())
    }

    /// Waits (at most 120 s) until `n` executors take tasks.
    ///
    /// # Errors
    /// Fewer executors answered; the message carries every process's log.
    pub fn wait(&self, n: usize) -> Result<()> {
        let out = std::process::Command::new(&self.exe)
            .args(["cluster", "wait", "--scheduler", &self.address()])
            .args(["--executors", &n.to_string(), "--timeout", "120"])
            .output()?;
        if !out.status.success() {
            anyhow::bail!(
                "{n} executor(s) did not come up: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.logs()
            );
        }
        Ok(())
    }

    /// Every process's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = format!("scheduler log:\n{}", self.scheduler.log());
        for (i, e) in self.executors.iter().enumerate() {
            s.push_str(&format!("\nexecutor {i} log:\n{}", e.log()));
        }
        s
    }
}
