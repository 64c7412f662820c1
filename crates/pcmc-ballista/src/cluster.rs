//! pcmc's own cluster processes: Ballista's scheduler and executor with
//! pcmc's physical codec, so that its operators and functions (with their
//! step values) can be sent to and run by remote executors. The stock
//! Ballista binaries cannot run them.

use crate::codec::PcmcPhysicalCodec;
use crate::driver::probe;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a cluster process could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A bad address, or a scheduler that cannot be reached: the user's
    /// input is at fault.
    #[error("{0}")]
    Input(String),
    /// The process failed while running.
    #[error("{0}")]
    Failed(String),
}

/// Settings of `pcmc cluster scheduler`.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Address to listen on.
    pub bind: SocketAddr,
    /// Seconds without a heartbeat after which an executor counts as lost
    /// and its tasks are run elsewhere.
    pub executor_timeout: u64,
    /// Failed attempts of one task before its job fails.
    pub task_max_failures: usize,
}

/// Settings of `pcmc cluster executor`.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler's host.
    pub scheduler_host: String,
    /// The scheduler's port.
    pub scheduler_port: u16,
    /// Host to listen on.
    pub bind_host: String,
    /// Host name the scheduler and drivers use to reach this executor.
    pub advertise: String,
    /// Arrow Flight port (results and shuffle data).
    pub port: u16,
    /// gRPC port (tasks from the scheduler).
    pub grpc_port: u16,
    /// Ballista's own scratch directory (default: a temporary directory).
    pub work_dir: Option<PathBuf>,
    /// Tasks run at once.
    pub slots: usize,
    /// Seconds between heartbeats to the scheduler.
    pub heartbeat: u64,
    /// How long to wait for the scheduler to accept connections at start.
    pub connect_timeout: Duration,
}

/// `HOST:PORT` as an address to listen on.
///
/// # Errors
/// [`ClusterError::Input`] naming `flag`.
pub fn parse_bind(flag: &str, s: &str) -> Result<SocketAddr, ClusterError> {
    use std::net::ToSocketAddrs;
    s.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            ClusterError::Input(format!(
                "{flag}: {s:?} is not an address HOST:PORT to listen on"
            ))
        })
}

async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Runs a scheduler until SIGTERM or SIGINT.
///
/// # Errors
/// [`ClusterError::Input`] if the address cannot be bound;
/// [`ClusterError::Failed`] if the server stops with an error.
pub async fn run_scheduler(opts: SchedulerOptions) -> Result<(), ClusterError> {
    // Fail with a clear message before Ballista does.
    drop(std::net::TcpListener::bind(opts.bind).map_err(|e| {
        ClusterError::Input(format!("--bind {}: cannot listen there: {e}", opts.bind))
    })?);
    let timeout = opts.executor_timeout.max(1);
    let config = SchedulerConfig {
        bind_host: opts.bind.ip().to_string(),
        external_host: opts.bind.ip().to_string(),
        bind_port: opts.bind.port(),
        executor_timeout_seconds: timeout,
        expire_dead_executor_interval_seconds: (timeout / 3).clamp(1, 15),
        no_executors_grace_period_seconds: timeout,
        task_max_failures: opts.task_max_failures.max(1),
        override_physical_codec: Some(Arc::new(PcmcPhysicalCodec::default())),
        ..Default::default()
    };
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(|e| ClusterError::Failed(format!("scheduler: {e}")))?;
    tracing::info!(
        "pcmc scheduler listening on {} (executor timeout {timeout} s)",
        opts.bind
    );
    tokio::select! {
        r = start_server(cluster, opts.bind, Arc::new(config)) => {
            r.map_err(|e| ClusterError::Failed(format!("scheduler: {e}")))
        }
        _ = terminated() => {
            tracing::info!("pcmc scheduler: stopping on a signal");
            Ok(())
        }
    }
}

/// Runs an executor until SIGTERM or SIGINT (Ballista's own handling).
///
/// # Errors
/// [`ClusterError::Input`] if the scheduler cannot be reached within
/// `connect_timeout`; [`ClusterError::Failed`] if the executor stops with an
/// error.
pub async fn run_executor(opts: ExecutorOptions) -> Result<(), ClusterError> {
    let deadline = Instant::now() + opts.connect_timeout;
    loop {
        match probe(
            &opts.scheduler_host,
            opts.scheduler_port,
            Duration::from_secs(2),
        ) {
            Ok(()) => break,
            Err(e) if Instant::now() >= deadline => {
                return Err(ClusterError::Input(format!(
                    "--scheduler {}:{}: no scheduler answers there after {} s ({e})",
                    opts.scheduler_host,
                    opts.scheduler_port,
                    opts.connect_timeout.as_secs()
                )));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    for (flag, port) in [("--bind", opts.port), ("--grpc-port", opts.grpc_port)] {
        drop(
            std::net::TcpListener::bind((opts.bind_host.as_str(), port)).map_err(|e| {
                ClusterError::Input(format!(
                    "{flag}: cannot listen on {}:{port}: {e}",
                    opts.bind_host
                ))
            })?,
        );
    }
    let config = ExecutorProcessConfig {
        bind_host: opts.bind_host.clone(),
        external_host: Some(opts.advertise.clone()),
        port: opts.port,
        grpc_port: opts.grpc_port,
        scheduler_host: opts.scheduler_host.clone(),
        scheduler_port: opts.scheduler_port,
        vcores: opts.slots.max(1),
        work_dir: opts
            .work_dir
            .as_ref()
            .map(|d| d.to_string_lossy().into_owned()),
        executor_heartbeat_interval_seconds: opts.heartbeat.max(1),
        print_thread_info: false,
        override_physical_codec: Some(Arc::new(PcmcPhysicalCodec::default())),
        ..Default::default()
    };
    tracing::info!(
        "pcmc executor {}:{} ({} slot(s)) joining the scheduler at {}:{}",
        opts.advertise,
        opts.port,
        opts.slots,
        opts.scheduler_host,
        opts.scheduler_port
    );
    start_executor_process(Arc::new(config))
        .await
        .map_err(|e| ClusterError::Failed(format!("executor: {e}")))
}

fn runtime() -> Result<tokio::runtime::Runtime, ClusterError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("pcmc-cluster")
        .build()
        .map_err(|e| ClusterError::Failed(format!("cannot start the runtime: {e}")))
}

/// [`run_scheduler`] on a runtime of its own, blocking until it stops.
///
/// # Errors
/// As [`run_scheduler`].
pub fn serve_scheduler(opts: SchedulerOptions) -> Result<(), ClusterError> {
    runtime()?.block_on(run_scheduler(opts))
}

/// [`run_executor`] on a runtime of its own, blocking until it stops.
///
/// # Errors
/// As [`run_executor`].
pub fn serve_executor(opts: ExecutorOptions) -> Result<(), ClusterError> {
    runtime()?.block_on(run_executor(opts))
}
