//! pcmc's own cluster processes: Ballista's scheduler and executor with
//! pcmc's physical codec, so that its operators and functions (with their
//! step values) can be sent to and run by remote executors (the stock
//! Ballista binaries cannot run them), each behind the cluster's secret
//! ([`crate::auth`]) and the executor's guards ([`crate::guard`]).

use crate::auth::ClusterToken;
use crate::codec::PcmcPhysicalCodec;
use crate::driver::probe;
use crate::guard::{GuardedFlight, NoObjectStores, PcmcEngine};
use crate::longpoll::LongPoll;
use arrow_flight::flight_service_server::FlightServiceServer;
use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpcServer;
use ballista_executor::ArrowFlightServerProvider;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::create_scheduler;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;

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
    /// Address to listen on (port 0: any free port, published through
    /// `address_file`).
    pub bind: SocketAddr,
    /// Host name or address the executors and drivers reach this scheduler
    /// at (default: see [`advertised_host`]).
    pub advertise: Option<String>,
    /// Seconds without a heartbeat after which an executor counts as lost
    /// and its tasks are run elsewhere.
    pub executor_timeout: u64,
    /// Failed attempts of one task before its job fails.
    pub task_max_failures: usize,
    /// The cluster's secret: every request must carry it.
    pub token: ClusterToken,
    /// Where to publish `HOST:PORT` once listening (written atomically).
    pub address_file: Option<PathBuf>,
}

/// Settings of `pcmc cluster executor`.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler's host.
    pub scheduler_host: String,
    /// The scheduler's port.
    pub scheduler_port: u16,
    /// Address to listen on for Arrow Flight (port 0: any free port).
    pub bind: SocketAddr,
    /// Host name the scheduler and drivers use to reach this executor
    /// (default: see [`advertised_host`]).
    pub advertise: Option<String>,
    /// The work root: every particle file a task touches lies below it
    /// (the drivers' `--work-dir` must be inside it).
    pub work_root: PathBuf,
    /// Ballista's own scratch directory (default: a private temporary
    /// directory, removed at exit).
    pub scratch_dir: Option<PathBuf>,
    /// Tasks run at once.
    pub slots: usize,
    /// Seconds between heartbeats to the scheduler.
    pub heartbeat: u64,
    /// How long to wait for the scheduler to accept connections at start.
    pub connect_timeout: Duration,
    /// The cluster's secret.
    pub token: ClusterToken,
    /// Where to publish `HOST:PORT` of the Flight service once listening.
    pub address_file: Option<PathBuf>,
}

/// `HOST:PORT` as an address to listen on. IPv6 literals go in brackets
/// (`[::1]:50050`).
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
                "{flag}: {s:?} is not an address HOST:PORT to listen on (IPv6 as [ADDR]:PORT)"
            ))
        })
}

/// This machine's host name.
pub fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

/// The host a process bound to `bind` tells others to reach it at:
/// `advertise` when given; the bound address when it is a specific one;
/// for a wildcard (`0.0.0.0`, `::`) this machine's host name when it
/// resolves to an address that is not loopback — never the wildcard
/// itself, which means "this machine" to whoever dials it.
///
/// # Errors
/// [`ClusterError::Input`] for a wildcard bind whose host name does not
/// resolve to a routable address (give `--advertise`).
pub fn advertised_host(bind: &SocketAddr, advertise: Option<&str>) -> Result<String, ClusterError> {
    use std::net::ToSocketAddrs;
    if let Some(a) = advertise {
        let a = a.trim();
        if a.is_empty() || a == "0.0.0.0" || a == "::" || a == "[::]" {
            return Err(ClusterError::Input(format!(
                "--advertise: {a:?} is not an address other machines can reach"
            )));
        }
        return Ok(crate::driver::url_host(a));
    }
    let ip = bind.ip();
    if !ip.is_unspecified() {
        return Ok(crate::driver::url_host(&ip.to_string()));
    }
    let name = host_name().ok_or_else(|| {
        ClusterError::Input(
            "--bind: a wildcard address needs --advertise (this machine's host name is unknown)"
                .into(),
        )
    })?;
    let routable = (name.as_str(), bind.port())
        .to_socket_addrs()
        .map(|mut a| a.any(|x| !x.ip().is_loopback() && !x.ip().is_unspecified()))
        .unwrap_or(false);
    if routable {
        Ok(name)
    } else {
        Err(ClusterError::Input(format!(
            "--bind {bind}: this machine's host name {name:?} does not resolve to an address other machines can reach; give --advertise ADDR"
        )))
    }
}

/// Listens on `bind` (port 0: any free port): the listener, the address it
/// got, and the host others reach it at ([`advertised_host`]).
async fn listen(
    bind: SocketAddr,
    advertise: Option<&str>,
) -> Result<(tokio::net::TcpListener, SocketAddr, String), ClusterError> {
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| ClusterError::Input(format!("--bind {bind}: cannot listen there: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| ClusterError::Failed(format!("--bind {bind}: {e}")))?;
    let host = advertised_host(&bound, advertise)?;
    Ok((listener, bound, host))
}

/// Writes `HOST:PORT` to `file` atomically (a temporary file, then a
/// rename), so a reader never sees half of it.
fn publish(file: &Path, host: &str, port: u16) -> Result<(), ClusterError> {
    let tmp = file.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&tmp, format!("{host}:{port}\n"))
        .and_then(|()| std::fs::rename(&tmp, file))
        .map_err(|e| ClusterError::Input(format!("--address-file {}: {e}", file.display())))
}

/// The connections of `listener`, with Nagle's algorithm off: gRPC's small
/// frames would otherwise wait for delayed acknowledgements (~40 ms each).
fn incoming(listener: tokio::net::TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
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

/// A session state like Ballista's default, with no object store.
fn scheduler_session(
    config: datafusion::prelude::SessionConfig,
) -> datafusion::common::Result<datafusion::execution::SessionState> {
    let state = ballista_core::utils::default_session_builder(config)?;
    let runtime = RuntimeEnvBuilder::new()
        .with_object_store_registry(Arc::new(NoObjectStores))
        .build_arc()?;
    Ok(SessionStateBuilder::new_from_existing(state)
        .with_runtime_env(runtime)
        .build())
}

/// Runs a scheduler until SIGTERM or SIGINT. It serves only Ballista's
/// scheduler gRPC service (no REST API, no Flight proxy), behind the
/// cluster secret; executors pull their tasks (pull-staged scheduling), so
/// that no executor needs a task port of its own.
///
/// # Errors
/// [`ClusterError::Input`] if the address cannot be bound;
/// [`ClusterError::Failed`] if the server stops with an error.
pub async fn run_scheduler(opts: SchedulerOptions) -> Result<(), ClusterError> {
    let (listener, bound, host) = listen(opts.bind, opts.advertise.as_deref()).await?;
    let timeout = opts.executor_timeout.max(1);
    let config = SchedulerConfig {
        bind_host: bound.ip().to_string(),
        external_host: host.clone(),
        bind_port: bound.port(),
        scheduling_policy: TaskSchedulingPolicy::PullStaged,
        executor_timeout_seconds: timeout,
        expire_dead_executor_interval_seconds: (timeout / 3).clamp(1, 15),
        no_executors_grace_period_seconds: timeout,
        task_max_failures: opts.task_max_failures.max(1),
        // A pcmc run submits up to ~100 jobs a second, each holding its
        // step's plan (~65 kB on lv11): forget finished jobs after 10 s,
        // not Ballista's hour, so the scheduler's memory stays flat over a
        // long run (measured: flat at 460 MB with 60 s; see the guide). The
        // driver fetches a job's rows within milliseconds of its end.
        finished_job_state_clean_up_interval_seconds: 10,
        finished_job_data_clean_up_interval_seconds: 10,
        override_physical_codec: Some(Arc::new(PcmcPhysicalCodec::default())),
        override_create_grpc_client_endpoint: Some(opts.token.endpoint_hook()),
        override_session_builder: Some(Arc::new(scheduler_session)),
        ..Default::default()
    };
    let config = Arc::new(config);
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(|e| ClusterError::Failed(format!("scheduler: {e}")))?;
    let scheduler = create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster, config.clone())
        .await
        .map_err(|e| ClusterError::Failed(format!("scheduler: {e}")))?;
    // Idle executors' polls are held up to a quarter of the executor
    // timeout (at most a second): a held poll is their heartbeat.
    let hold = Duration::from_millis((timeout * 250).min(1000));
    // An abandoned job is found by its name among the active ones.
    let state = scheduler.state.clone();
    let find: crate::longpoll::JobFinder = Arc::new(move |name: String| {
        let state = state.clone();
        Box::pin(async move {
            let running = state.task_manager.get_running_job_cache();
            for (id, job) in running.iter() {
                if job.execution_graph.read().await.job_name() == name {
                    return Some(id.to_string());
                }
            }
            None
        })
    });
    let service = InterceptedService::new(
        SchedulerGrpcServer::new(LongPoll::new(scheduler, hold, find))
            .max_encoding_message_size(config.grpc_server_max_encoding_message_size as usize)
            .max_decoding_message_size(config.grpc_server_max_decoding_message_size as usize),
        opts.token.guard("scheduler gRPC"),
    );
    if let Some(f) = &opts.address_file {
        publish(f, &host, bound.port())?;
    }
    tracing::info!(
        "pcmc scheduler listening on {bound}, advertised as {host}:{} (executor timeout {timeout} s; every request needs the cluster secret)",
        bound.port()
    );
    tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(incoming(listener), terminated())
        .await
        .map_err(|e| ClusterError::Failed(format!("scheduler: {e}")))?;
    tracing::info!("pcmc scheduler: stopped");
    Ok(())
}

/// Runs an executor until SIGTERM or SIGINT (Ballista's own handling). It
/// pulls tasks from the scheduler, runs only pcmc's plans
/// ([`crate::guard::check_plan`]) with no object store, keeps every
/// particle file under `work_root`, and serves results over Arrow Flight
/// behind the cluster secret.
///
/// # Errors
/// [`ClusterError::Input`] if the scheduler cannot be reached within
/// `connect_timeout` or the work root is unusable; [`ClusterError::Failed`]
/// if the executor stops with an error.
pub async fn run_executor(opts: ExecutorOptions) -> Result<(), ClusterError> {
    let root = std::path::absolute(&opts.work_root).map_err(|e| {
        ClusterError::Input(format!("--work-dir {}: {e}", opts.work_root.display()))
    })?;
    if !root.is_dir() {
        return Err(ClusterError::Input(format!(
            "--work-dir {}: not a directory (create it on the shared file system first)",
            root.display()
        )));
    }
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
    // Bind the Flight port here (port 0 becomes a real one) and hand the
    // listener to the Flight service below.
    let (listener, bound, host) = listen(opts.bind, opts.advertise.as_deref()).await?;
    let scratch = match &opts.scratch_dir {
        Some(d) => {
            std::fs::create_dir_all(d)
                .map_err(|e| ClusterError::Input(format!("--scratch-dir {}: {e}", d.display())))?;
            d.clone()
        }
        None => private_scratch()?,
    };
    let listener = Arc::new(Mutex::new(Some(listener)));
    let guard = opts.token.guard("executor Flight");
    let flight: Arc<ArrowFlightServerProvider> =
        Arc::new(move |work_dir, _addr, mut shutdown, grpc_config| {
            let listener = listener.lock().ok().and_then(|mut l| l.take());
            let guard = guard.clone();
            tokio::spawn(async move {
                let Some(listener) = listener else {
                    return Err(ballista_core::error::BallistaError::General(
                        "the Flight service was started twice".into(),
                    ));
                };
                let service =
                    FlightServiceServer::with_interceptor(GuardedFlight::new(work_dir), guard);
                ballista_core::utils::create_grpc_server(&grpc_config)
                    .add_service(service)
                    .serve_with_incoming_shutdown(incoming(listener), async move {
                        shutdown.recv().await
                    })
                    .await
                    .map_err(ballista_core::error::BallistaError::TonicError)
            })
        });
    let root_for_runtime = scratch.clone();
    let runtime: ballista_core::RuntimeProducer = Arc::new(move |_| {
        RuntimeEnvBuilder::new()
            .with_temp_file_path(root_for_runtime.clone())
            .with_object_store_registry(Arc::new(NoObjectStores))
            .build_arc()
    });
    let config = ExecutorProcessConfig {
        bind_host: bound.ip().to_string(),
        external_host: Some(host.clone()),
        port: bound.port(),
        // Pull-staged: no task port is opened; the value is not used.
        grpc_port: 0,
        scheduler_host: crate::driver::url_host(&opts.scheduler_host),
        scheduler_port: opts.scheduler_port,
        task_scheduling_policy: TaskSchedulingPolicy::PullStaged,
        vcores: opts.slots.max(1),
        work_dir: Some(scratch.to_string_lossy().into_owned()),
        executor_heartbeat_interval_seconds: opts.heartbeat.max(1),
        print_thread_info: false,
        override_physical_codec: Some(Arc::new(PcmcPhysicalCodec::confined(root.clone()))),
        override_execution_engine: Some(Arc::new(PcmcEngine::default())),
        override_runtime_producer: Some(runtime),
        override_arrow_flight_service: Some(flight),
        override_create_grpc_client_endpoint: Some(opts.token.endpoint_hook()),
        ..Default::default()
    };
    if let Some(f) = &opts.address_file {
        publish(f, &host, bound.port())?;
    }
    tracing::info!(
        "pcmc executor {host}:{} ({} slot(s), work root {}) joining the scheduler at {}:{}",
        bound.port(),
        opts.slots,
        root.display(),
        opts.scheduler_host,
        opts.scheduler_port
    );
    let r = start_executor_process(Arc::new(config))
        .await
        .map_err(|e| ClusterError::Failed(format!("executor: {e}")));
    if opts.scratch_dir.is_none() {
        let _ = std::fs::remove_dir_all(&scratch);
    }
    r
}

/// A new directory only this user can enter, under the system's temporary
/// directory, for Ballista's scratch files.
fn private_scratch() -> Result<PathBuf, ClusterError> {
    use std::os::unix::fs::DirBuilderExt;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("pcmc-executor-{}-{nanos}", std::process::id()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| ClusterError::Failed(format!("cannot create {}: {e}", dir.display())))?;
    Ok(dir)
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
