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
        /// Address to listen on: 127.0.0.1:PORT (the default, this machine
        /// only), the node's cluster address, or 0.0.0.0:PORT for every
        /// interface; port 0 takes any free port (see --address-file).
        #[arg(long, default_value = "127.0.0.1:50050")]
        bind: String,
        /// Host name or address the executors and drivers reach this
        /// scheduler at (default: the bound address; for 0.0.0.0 this
        /// machine's host name).
        #[arg(long)]
        advertise: Option<String>,
        /// A file holding the cluster's secret, readable by its owner only
        /// (else the PCMC_CLUSTER_TOKEN environment variable).
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Write HOST:PORT here once listening (atomically), for scripts
        /// that start the other processes.
        #[arg(long)]
        address_file: Option<PathBuf>,
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
        /// Address to listen on for Arrow Flight (results); port 0 takes
        /// any free port. The executor opens no other port: it pulls its
        /// tasks from the scheduler.
        #[arg(long, default_value = "127.0.0.1:50051")]
        bind: String,
        /// Host name the scheduler and drivers use to reach this executor
        /// (default: the --bind host, or this machine's name when binding
        /// 0.0.0.0).
        #[arg(long)]
        advertise: Option<String>,
        /// The work root, on the file system every node shares: tasks touch
        /// particle files only below it, and drivers' --work-dir must lie
        /// inside it.
        #[arg(long)]
        work_dir: PathBuf,
        /// Ballista's own scratch directory (default: a private temporary
        /// directory, removed at exit).
        #[arg(long)]
        scratch_dir: Option<PathBuf>,
        /// A file holding the cluster's secret (else PCMC_CLUSTER_TOKEN).
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Write HOST:PORT of the Flight service here once listening.
        #[arg(long)]
        address_file: Option<PathBuf>,
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
        /// A file holding the cluster's secret (else PCMC_CLUSTER_TOKEN).
        #[arg(long)]
        token_file: Option<PathBuf>,
    },
    /// Print a fresh cluster secret (256 random bits as 64 hexadecimal
    /// digits): `pcmc cluster token > FILE && chmod 600 FILE`, then give
    /// FILE to every process with --token-file (or its content in
    /// PCMC_CLUSTER_TOKEN). Never put the secret on a command line.
    Token,
}

/// The cluster secret from `--token-file` or `PCMC_CLUSTER_TOKEN`.
///
/// # Errors
/// An input error (exit 2) saying how to make one.
#[cfg(feature = "ballista")]
pub fn load_token(file: Option<&std::path::Path>) -> Result<pcmc_ballista::auth::ClusterToken> {
    pcmc_ballista::auth::ClusterToken::load(file).map_err(|e| {
        crate::error::InputError::flag(
            if file.is_some() {
                "--token-file"
            } else {
                pcmc_ballista::auth::TOKEN_ENV
            },
            e.to_string(),
        )
        .into()
    })
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
        ClusterCommand::Token => {
            let t = pcmc_ballista::auth::ClusterToken::generate()
                .map_err(|e| anyhow::anyhow!(e.to_string()))?;
            println!("{}", t.expose());
            Ok(())
        }
        ClusterCommand::Scheduler {
            bind,
            advertise,
            executor_timeout,
            task_max_failures,
            token_file,
            address_file,
        } => {
            let token = load_token(token_file.as_deref())?;
            let bind = parse_bind("--bind", &bind).map_err(|e| to_anyhow("--bind", e))?;
            serve_scheduler(SchedulerOptions {
                bind,
                advertise,
                executor_timeout,
                task_max_failures,
                token,
                address_file,
            })
            .map_err(|e| to_anyhow("cluster scheduler", e))
        }
        ClusterCommand::Wait {
            scheduler,
            executors,
            timeout,
            token_file,
        } => {
            let token = load_token(token_file.as_deref())?;
            pcmc_ballista::driver::parse_scheduler(&scheduler)
                .map_err(|e| InputError::flag("--scheduler", e.to_string()))?;
            if executors == 0 {
                return Err(InputError::flag("--executors", "must be at least 1").into());
            }
            let n = pcmc_ballista::driver::wait_for_executors(
                &scheduler,
                executors,
                std::time::Duration::from_secs(timeout),
                &token,
            )?;
            println!("{n} executor(s) ready at {scheduler}");
            Ok(())
        }
        ClusterCommand::Executor {
            scheduler,
            bind,
            advertise,
            work_dir,
            scratch_dir,
            slots,
            heartbeat,
            connect_timeout,
            token_file,
            address_file,
        } => {
            let token = load_token(token_file.as_deref())?;
            let (host, port) = pcmc_ballista::driver::parse_scheduler(&scheduler)
                .map_err(|e| InputError::flag("--scheduler", e.to_string()))?;
            let bind = parse_bind("--bind", &bind).map_err(|e| to_anyhow("--bind", e))?;
            if slots == 0 {
                return Err(InputError::flag("--slots", "must be at least 1").into());
            }
            serve_executor(ExecutorOptions {
                scheduler_host: host,
                scheduler_port: port,
                bind,
                advertise,
                work_root: work_dir,
                scratch_dir,
                slots,
                heartbeat,
                connect_timeout: std::time::Duration::from_secs(connect_timeout),
                token,
                address_file,
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
/// `pcmc bench compare --executors ballista` and the tests. It has a secret
/// of its own (made by `pcmc cluster token`, kept in a private file in its
/// directory) and a work root (`DIR/work`). Every process is stopped when
/// it is dropped; logs go to files in its directory.
pub struct LocalCluster {
    exe: PathBuf,
    dir: PathBuf,
    port: u16,
    token_file: PathBuf,
    scheduler: LocalProcess,
    executors: Vec<LocalProcess>,
    started: usize,
}

/// A child process of a [`LocalCluster`], killed when dropped.
pub struct LocalProcess {
    child: std::process::Child,
    log: PathBuf,
    address_file: Option<PathBuf>,
}

impl LocalProcess {
    fn spawn(mut cmd: std::process::Command, log: PathBuf) -> Result<LocalProcess> {
        let f = std::fs::File::create(&log)?;
        let child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::from(f))
            .spawn()?;
        Ok(LocalProcess {
            child,
            log,
            address_file: None,
        })
    }

    /// The address (`HOST:PORT`) the process published with
    /// `--address-file`, once it has.
    pub fn address(&self) -> Option<String> {
        self.address_file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
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

/// Writes `bytes` to a new file `path` that only its owner can read and
/// write (mode 0600 from the start).
///
/// # Errors
/// I/O failures, or the file exists already.
pub fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    Ok(())
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
        std::fs::create_dir_all(dir.join("work"))?;
        let token_file = dir.join("token");
        if !token_file.exists() {
            let out = std::process::Command::new(exe)
                .args(["cluster", "token"])
                .output()?;
            if !out.status.success() {
                anyhow::bail!(
                    "pcmc cluster token failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            write_private(&token_file, &out.stdout)?;
        }
        let n = std::fs::read_dir(dir).map_or(0, |d| d.count());
        let mut cmd = std::process::Command::new(exe);
        cmd.args(["cluster", "scheduler", "--bind"])
            .arg(format!("127.0.0.1:{port}"))
            .args(["--executor-timeout", "4", "--token-file"])
            .arg(&token_file);
        let scheduler = LocalProcess::spawn(cmd, dir.join(format!("scheduler-{n}.log")))?;
        let mut c = LocalCluster {
            exe: exe.to_path_buf(),
            dir: dir.to_path_buf(),
            port,
            token_file,
            scheduler,
            executors: Vec::new(),
            started: n,
        };
        for _ in 0..executors {
            c.add_executor()?;
        }
        if executors > 0 {
            c.wait(executors)?;
        }
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

    /// The private file holding the cluster's secret.
    pub fn token_file(&self) -> &std::path::Path {
        &self.token_file
    }

    /// The Flight address (`HOST:PORT`) executor `i` published, once it has.
    pub fn executor_address(&self, i: usize) -> Option<String> {
        self.executors.get(i).and_then(LocalProcess::address)
    }

    /// The executors' work root (drivers' work directories go below it).
    pub fn work_root(&self) -> PathBuf {
        self.dir.join("work")
    }

    /// The `pcmc run` flags that point a run at this cluster: the
    /// scheduler, the secret's file and a work directory in the work root.
    pub fn run_flags(&self) -> Vec<String> {
        vec![
            "--scheduler".into(),
            self.address(),
            "--token-file".into(),
            self.token_file.display().to_string(),
            "--work-dir".into(),
            self.work_root().display().to_string(),
        ]
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
        self.add_executor_wrapped(&[])
    }

    /// [`LocalCluster::add_executor`] with the executor's command line
    /// after `wrapper` (a program and its arguments that end by running
    /// the rest, e.g. `unshare` giving it a file system view of its own);
    /// an empty `wrapper` runs it directly.
    ///
    /// # Errors
    /// As [`LocalCluster::add_executor`].
    pub fn add_executor_wrapped(&mut self, wrapper: &[&str]) -> Result<()> {
        self.started += 1;
        let address_file = self.dir.join(format!("executor-{}.addr", self.started));
        let mut cmd = match wrapper.split_first() {
            Some((prog, args)) => {
                let mut c = std::process::Command::new(prog);
                c.args(args).arg(&self.exe);
                c
            }
            None => std::process::Command::new(&self.exe),
        };
        cmd.args(["cluster", "executor", "--scheduler"])
            .arg(format!("127.0.0.1:{}", self.port))
            .args(["--bind", "127.0.0.1:0"])
            .args(["--slots", "1", "--heartbeat", "1"])
            .arg("--work-dir")
            .arg(self.work_root())
            .arg("--scratch-dir")
            .arg(self.dir.join(format!("executor-{}", self.started)))
            .arg("--token-file")
            .arg(&self.token_file)
            .arg("--address-file")
            .arg(&address_file);
        let log = self.dir.join(format!("executor-{}.log", self.started));
        let mut p = LocalProcess::spawn(cmd, log)?;
        p.address_file = Some(address_file);
        self.executors.push(p);
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
            .arg("--token-file")
            .arg(&self.token_file)
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
