//! The driver: a [`LikelihoodExecutor`] that runs each filter step as two
//! Ballista jobs ([`crate::plans`]) on a running cluster and keeps only
//! scalars between them.

use crate::auth::{ClusterToken, TOKEN_HEADER};
use crate::codec::PcmcPhysicalCodec;
use crate::plans::{
    Layout, ProbeExec, SharedCheck, Smc2PassExec, StepJob, first_offspring, reruns, tokens,
};
use ballista_core::execution_plans::execute_physical_plan;
use ballista_core::extension::SessionConfigExt;
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Float64Type, UInt64Type};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionConfig;
use datafusion_proto::protobuf::PhysicalPlanNode;
use futures::TryStreamExt;
use pcmc_core::accept::AcceptTest;
use pcmc_core::filter::{FilterKey, FilterOutput, FilterProblem, rank_slice};
use pcmc_core::smc2::{PassBatch, PassRequest};
use pcmc_core::ssa::SsaCounters;
use pcmc_core::{Error, LikelihoodExecutor, Result};
use pcmc_dataflow::params::StepWire;
use pcmc_dataflow::smc2::{PassJob, read_results};
use pcmc_dataflow::{account_weight_sums, check_species, read_weight_sums, start_pass};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Settings of the Ballista executor.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// The scheduler, `df://HOST:PORT` or `HOST:PORT`.
    pub scheduler: String,
    /// Partitions P (tasks per job).
    pub partitions: usize,
    /// The work directory: particles between steps live here. Every
    /// executor and the driver must see it at the same path.
    pub work_dir: PathBuf,
    /// Longest time a job may go without progress (no task started,
    /// running or finished: see [`crate::plans::Layout::heartbeat_ms`])
    /// before the cluster counts as unavailable. A job that keeps making
    /// progress may run as long as it needs.
    pub stall_timeout: Duration,
    /// Times a failed job is submitted again before the run fails.
    pub max_resubmits: u32,
    /// The cluster's secret (needed for a real cluster; the in-process
    /// stand-in ignores it).
    pub token: Option<ClusterToken>,
}

impl ClusterConfig {
    /// `partitions` partitions on the scheduler at `scheduler`, particles in
    /// `work_dir`; a job without progress for 10 minutes counts as stuck, a
    /// failed job is submitted again up to 3 times.
    pub fn new(scheduler: impl Into<String>, partitions: usize, work_dir: PathBuf) -> Self {
        ClusterConfig {
            scheduler: scheduler.into(),
            partitions,
            work_dir,
            stall_timeout: Duration::from_secs(600),
            max_resubmits: 3,
            token: None,
        }
    }
}

/// `df://HOST:PORT` or `HOST:PORT` as host and port.
///
/// # Errors
/// [`Error::Setting`] naming `--scheduler` for anything else.
pub fn parse_scheduler(s: &str) -> Result<(String, u16)> {
    let bad = |why: &str| {
        Error::setting(
            "--scheduler",
            format!("{s:?} is not a scheduler address df://HOST:PORT ({why})"),
        )
    };
    let rest = s.strip_prefix("df://").unwrap_or(s);
    let (host, port) = rest.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| bad("the port is not a number in 1..65535"))?;
    if port == 0 {
        return Err(bad("port 0"));
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains('/') || host.chars().any(char::is_whitespace) {
        return Err(bad("no host name"));
    }
    Ok((host.to_string(), port))
}

/// `host` as it goes into a URL: an IPv6 literal in brackets.
pub fn url_host(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// Whether a TCP connection to `host:port` opens within `timeout`.
///
/// # Errors
/// The reason it does not (name resolution or connection), as text.
pub fn probe(host: &str, port: u16, timeout: Duration) -> std::result::Result<(), String> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    let mut last = format!("{host} has no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("{a}: {e}"),
        }
    }
    Err(last)
}

/// What changes in a job's step directory while its tasks make progress:
/// the number of entries below it (three levels: attempt, beat and part
/// files) and their modification times and sizes. Compared only with
/// itself, so clocks that differ between the driver's and the executors'
/// hosts do not matter.
fn fingerprint(dir: &Path) -> (u64, u128, u64) {
    fn walk(dir: &Path, depth: u32, acc: &mut (u64, u128, u64)) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            acc.0 += 1;
            let Ok(m) = e.metadata() else { continue };
            if let Ok(t) = m
                .modified()
                .map(|t| t.duration_since(UNIX_EPOCH).unwrap_or_default())
            {
                acc.1 = acc.1.wrapping_add(t.as_nanos());
            }
            acc.2 = acc.2.wrapping_add(m.len());
            if m.is_dir() && depth > 0 {
                walk(&e.path(), depth - 1, acc);
            }
        }
    }
    let mut acc = (0, 0, 0);
    walk(dir, 3, &mut acc);
    acc
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A connection to a scheduler that submits physical plans as jobs, or
/// (`local`) a stand-in that runs each job in this process after sending
/// its plan through the codec both ways.
struct Client {
    host: String,
    port: u16,
    runtime: tokio::runtime::Runtime,
    session_config: SessionConfig,
    session_id: String,
    codec: PcmcPhysicalCodec,
    local: Option<datafusion::prelude::SessionContext>,
    /// Jobs submitted: each job's name is the session id and this number,
    /// so that the scheduler can find (and cancel) a job its driver
    /// abandoned.
    submitted: std::sync::atomic::AtomicU64,
}

/// How a job ended when it did not succeed.
enum JobError {
    /// It did not finish in time.
    Timeout,
    /// It failed (the scheduler's or the transport's message).
    Failed(String),
}

impl Client {
    /// Checks that the scheduler at `scheduler` accepts connections; every
    /// request of the session carries `token`.
    fn connect(scheduler: &str, partitions: usize, token: &ClusterToken) -> Result<Client> {
        let (host, port) = parse_scheduler(scheduler)?;
        probe(&host, port, Duration::from_secs(10)).map_err(|e| {
            Error::Executor(format!(
                "cannot reach the Ballista scheduler at {host}:{port} ({e}); start one with `pcmc cluster scheduler --bind {host}:{port}`"
            ))
        })?;
        Client::new(
            host,
            port,
            SessionConfig::new_with_ballista()
                .with_target_partitions(partitions.max(1))
                .with_ballista_grpc_metadata(HashMap::from([(
                    TOKEN_HEADER.to_string(),
                    token.expose().to_string(),
                )]))
                .with_ballista_override_create_grpc_client_endpoint(token.endpoint_hook()),
            None,
        )
    }

    /// The in-process stand-in (see [`BallistaExecutor::in_process`]).
    fn in_process(partitions: usize) -> Result<Client> {
        Client::new(
            "in-process".into(),
            0,
            SessionConfig::new().with_target_partitions(partitions.max(1)),
            Some(datafusion::prelude::SessionContext::new()),
        )
    }

    /// A client with its own runtime and a session id unique to this
    /// process and moment.
    fn new(
        host: String,
        port: u16,
        session_config: SessionConfig,
        local: Option<datafusion::prelude::SessionContext>,
    ) -> Result<Client> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("pcmc-ballista-driver")
            .build()
            .map_err(|e| Error::Executor(format!("ballista: cannot start the runtime: {e}")))?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Ok(Client {
            host,
            port,
            runtime,
            session_config,
            session_id: format!("pcmc-{}-{nanos}", std::process::id()),
            codec: PcmcPhysicalCodec::default(),
            local,
            submitted: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Encodes `plan` with the codec, decodes it, and runs every partition.
    fn run_local(
        &self,
        ctx: &datafusion::prelude::SessionContext,
        plan: Arc<dyn ExecutionPlan>,
    ) -> datafusion::common::Result<Vec<RecordBatch>> {
        use datafusion_proto::physical_plan::AsExecutionPlan;
        let mut buf = Vec::new();
        PhysicalPlanNode::try_from_physical_plan(plan, &self.codec)?.try_encode(&mut buf)?;
        let task_ctx = ctx.task_ctx();
        let plan =
            PhysicalPlanNode::try_decode(&buf)?.try_into_physical_plan(&task_ctx, &self.codec)?;
        let parts = self
            .runtime
            .block_on(datafusion::physical_plan::collect_partitioned(
                plan, task_ctx,
            ))?;
        Ok(parts.into_iter().flatten().collect())
    }

    /// Runs `plan` as one job and collects its rows. With `watch`, the job
    /// may run as long as the files in that directory keep changing (tasks
    /// starting, beating, finishing) and ends with [`JobError::Timeout`]
    /// once they have not changed for `limit`; without, `limit` bounds the
    /// whole job. The job is dropped on timeout, and the scheduler cancels a
    /// job whose driver went away ([`crate::longpoll`]).
    fn submit(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        watch: Option<&Path>,
        limit: Duration,
    ) -> std::result::Result<Vec<RecordBatch>, JobError> {
        if let Some(ctx) = &self.local {
            return self
                .run_local(ctx, plan)
                .map_err(|e| JobError::Failed(e.to_string()));
        }
        let url = format!("http://{}:{}", url_host(&self.host), self.port);
        let seq = self
            .submitted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let config = self
            .session_config
            .clone()
            .with_ballista_job_name(&format!("{}-{seq}", self.session_id));
        let fut = async {
            let stream = execute_physical_plan::<PhysicalPlanNode>(
                url,
                &config.ballista_config(),
                plan,
                &self.codec,
                self.session_id.clone(),
                config.clone(),
            )
            .await?;
            stream.try_collect::<Vec<RecordBatch>>().await
        };
        let check = (limit / 10).clamp(Duration::from_millis(20), Duration::from_secs(1));
        let outcome = self.runtime.block_on(async {
            let mut fut = Box::pin(fut);
            let mut last = watch.map(fingerprint);
            let mut since = Instant::now();
            loop {
                let tick = Box::pin(tokio::time::sleep(check));
                match futures::future::select(fut, tick).await {
                    futures::future::Either::Left((r, _)) => return Some(r),
                    futures::future::Either::Right(((), f)) => fut = f,
                }
                if let Some(dir) = watch {
                    let now = fingerprint(dir);
                    if last.as_ref() != Some(&now) {
                        last = Some(now);
                        since = Instant::now();
                    }
                }
                if since.elapsed() >= limit {
                    return None;
                }
            }
        });
        match outcome {
            Some(Ok(b)) => Ok(b),
            Some(Err(e)) => Err(JobError::Failed(e.to_string())),
            None => Err(JobError::Timeout),
        }
    }

    /// Whether the scheduler still accepts connections.
    fn reachable(&self) -> std::result::Result<(), String> {
        if self.local.is_some() {
            return Ok(());
        }
        probe(&self.host, self.port, Duration::from_secs(5))
    }
}

/// Waits until `executors` distinct executors of the cluster at `scheduler`
/// take tasks (registered and able to run pcmc's operators): submits probe
/// jobs of many short tasks until that many executors have answered, or
/// `timeout` has passed. Returns the number seen.
///
/// # Errors
/// [`Error::Setting`] for a bad address; [`Error::Executor`] if the
/// scheduler cannot be reached or fewer executors answered in time.
pub fn wait_for_executors(
    scheduler: &str,
    executors: usize,
    timeout: Duration,
    token: &ClusterToken,
) -> Result<usize> {
    let deadline = Instant::now() + timeout;
    let client = loop {
        match Client::connect(scheduler, 1, token) {
            Ok(c) => break c,
            Err(Error::Setting { field, reason }) => return Err(Error::Setting { field, reason }),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    let tasks = (executors * 8).max(8);
    let mut seen = std::collections::BTreeSet::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Executor(format!(
                "only {} of {executors} executor(s) took tasks from the scheduler at {}:{} in {} s",
                seen.len(),
                client.host,
                client.port,
                timeout.as_secs()
            )));
        }
        let probe = tokens(tasks).map_err(|e| Error::Executor(format!("ballista: {e}")))?;
        if let Ok(rows) = client.submit(Arc::new(ProbeExec::new(100, probe)), None, left) {
            for b in &rows {
                let pid = b.column(0).as_primitive::<UInt64Type>();
                let host = b.column(1).as_string::<i32>();
                for r in 0..b.num_rows() {
                    seen.insert((host.value(r).to_string(), pid.value(r)));
                }
            }
            if seen.len() >= executors {
                return Ok(seen.len());
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The driver side of the dataflow executor on a Ballista cluster.
pub struct BallistaExecutor {
    config: ClusterConfig,
    client: Client,
    run_dir: PathBuf,
    passes: u64,
    stop: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl BallistaExecutor {
    /// Connects to the cluster of `config` and creates this run's directory
    /// in the work directory.
    ///
    /// # Errors
    /// [`Error::Setting`] for a bad address or partition count;
    /// [`Error::Executor`] if the scheduler cannot be reached (naming it) or
    /// the work directory cannot be written.
    pub fn new(config: ClusterConfig) -> Result<Self> {
        if config.partitions == 0 {
            return Err(Error::setting("--partitions", "must be at least 1"));
        }
        let token = config.token.clone().ok_or_else(|| {
            Error::setting(
                crate::auth::TOKEN_ENV,
                crate::auth::AuthError::Missing.to_string(),
            )
        })?;
        let client = Client::connect(&config.scheduler, config.partitions, &token)?;
        let exec = Self::with_client(config, client)?;
        exec.check_shared()?;
        Ok(exec)
    }

    /// Checks that the executors see this run's directory: writes a random
    /// nonce into it and runs a probe job of 4 tasks per partition (at
    /// least 8, each holding its slot 50 ms, so that every executor takes
    /// some) whose tasks read it back.
    ///
    /// # Errors
    /// [`Error::Setting`] naming the work directory and the host of an
    /// executor that does not see it (a node-local directory at the same
    /// path); [`Error::Unavailable`] if the probe job does not finish.
    fn check_shared(&self) -> Result<()> {
        let layout = Layout {
            pass_dir: self.run_dir.join("pass-000000"),
            species: vec!["probe".into()],
            observed: Vec::new(),
            n: 1,
            parts: 1,
            heartbeat_ms: heartbeat(self.config.stall_timeout),
        };
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes)
            .map_err(|e| Error::Executor(format!("ballista: no random nonce: {e}")))?;
        let nonce: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let file = layout.pass_dir.join(SharedCheck::FILE);
        std::fs::create_dir(&layout.pass_dir)
            .and_then(|()| std::fs::write(&file, &nonce))
            .map_err(|e| {
                Error::Executor(format!("ballista: cannot write {}: {e}", file.display()))
            })?;
        let tasks = (4 * self.config.partitions).max(8);
        let probe = ProbeExec::new(
            50,
            tokens(tasks).map_err(|e| Error::Executor(format!("ballista: {e}")))?,
        )
        .checking(Some(SharedCheck {
            layout: layout.clone(),
            nonce,
            refused: None,
        }));
        // The probe's tasks leave no trace in a step directory: its whole
        // job is bounded, by the stall timeout but at least a minute.
        let limit = self.config.stall_timeout.max(Duration::from_secs(60));
        let rows = self
            .client
            .submit(Arc::new(probe), None, limit)
            .map_err(|e| match e {
                JobError::Timeout => self.unavailable(format!(
                    "did not run the work-directory probe in {} s",
                    limit.as_secs_f64()
                )),
                JobError::Failed(e) => self.refused_secret(&e).unwrap_or_else(|| {
                    Error::Executor(format!("ballista: the work-directory probe failed: {e}"))
                }),
            })?;
        let _ = std::fs::remove_dir_all(&layout.pass_dir);
        let mut hosts = std::collections::BTreeSet::new();
        for b in &rows {
            let host = b.column(1).as_string::<i32>();
            let why = b.column(2).as_string::<i32>();
            for r in 0..b.num_rows() {
                if !why.value(r).is_empty() {
                    return Err(Error::setting(
                        "--work-dir",
                        format!(
                            "the executor on host {} does not see the work directory {} ({}): give every executor and the driver a directory on storage they share, at the same path",
                            host.value(r),
                            self.config.work_dir.display(),
                            why.value(r)
                        ),
                    ));
                }
                hosts.insert(host.value(r).to_string());
            }
        }
        tracing::info!(
            "ballista: executors on {} see the work directory {}",
            hosts.into_iter().collect::<Vec<_>>().join(", "),
            self.config.work_dir.display()
        );
        Ok(())
    }

    /// An executor that runs every job in this process instead of on a
    /// cluster, after sending its plan through the codec both ways: the same
    /// operators, plans and driver, for tests and for checking a job without
    /// a cluster. `config.scheduler` is not used.
    ///
    /// # Errors
    /// As [`BallistaExecutor::new`], without the connection.
    pub fn in_process(config: ClusterConfig) -> Result<Self> {
        if config.partitions == 0 {
            return Err(Error::setting("--partitions", "must be at least 1"));
        }
        let client = Client::in_process(config.partitions)?;
        Self::with_client(config, client)
    }

    fn with_client(config: ClusterConfig, client: Client) -> Result<Self> {
        let run_dir = config.work_dir.join(&client.session_id);
        // The run's files are the owner's alone (0700): other users on the
        // shared file system can neither read the particles nor plant files.
        std::fs::create_dir_all(&config.work_dir)
            .and_then(|()| {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new().mode(0o700).create(&run_dir)
            })
            .map_err(|e| {
                Error::Executor(format!(
                    "ballista: cannot create the work directory {}: {e}",
                    run_dir.display()
                ))
            })?;
        Ok(BallistaExecutor {
            config,
            client,
            run_dir,
            passes: 0,
            stop: None,
        })
    }

    /// The settings.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// The error for a job refused for want of the cluster's secret.
    fn refused_secret(&self, err: &str) -> Option<Error> {
        err.contains("Unauthenticated").then(|| {
            Error::setting(
                "--token-file / PCMC_CLUSTER_TOKEN",
                format!(
                    "the Ballista scheduler at {}:{} refused this run's cluster secret: give the run the secret the cluster was started with",
                    self.client.host, self.client.port
                ),
            )
        })
    }

    fn unavailable(&self, what: String) -> Error {
        Error::Unavailable(format!(
            "the Ballista scheduler at {}:{} {what}",
            self.client.host, self.client.port
        ))
    }

    /// Runs `job` to completion: its result rows and the Unix time at which
    /// it was submitted. A job that fails while the scheduler still answers
    /// is submitted again (every job is deterministic), at most
    /// `max_resubmits` times; `out.jobs_resubmitted` counts them.
    fn run_job(
        &self,
        job: &StepJob,
        watch: &Path,
        out: &mut FilterOutput,
    ) -> Result<(Vec<RecordBatch>, f64)> {
        let plan = job
            .plan()
            .map_err(|e| Error::Executor(format!("ballista: planning a step: {e}")))?;
        self.run_plan(plan, watch, out)
    }

    /// As [`BallistaExecutor::run_job`], for a plan already built.
    fn run_plan(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        watch: &Path,
        out: &mut FilterOutput,
    ) -> Result<(Vec<RecordBatch>, f64)> {
        let mut attempt = 0;
        loop {
            if self
                .stop
                .as_ref()
                .is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst))
            {
                return Err(Error::Interrupted);
            }
            out.jobs += 1;
            let submitted = unix_now();
            let err = match self
                .client
                .submit(plan.clone(), Some(watch), self.config.stall_timeout)
            {
                Ok(batches) => return Ok((batches, submitted)),
                Err(JobError::Failed(e)) => e,
                Err(JobError::Timeout) => {
                    return Err(self.unavailable(format!(
                        "ran a job that made no progress for {} s (no task started, ran or finished: no executors, or the cluster is stuck); the job was cancelled",
                        self.config.stall_timeout.as_secs_f64()
                    )));
                }
            };
            if let Some(e) = self.refused_secret(&err) {
                return Err(e);
            }
            if let Err(why) = self.client.reachable() {
                return Err(
                    self.unavailable(format!("cannot be reached ({why}); last error: {err}"))
                );
            }
            if attempt >= self.config.max_resubmits {
                return Err(Error::Executor(format!(
                    "ballista: a job failed {} time(s); last error: {err}",
                    attempt + 1
                )));
            }
            tracing::warn!("ballista: a job failed ({err}); submitting it again");
            attempt += 1;
            out.jobs_resubmitted += 1;
        }
    }

    /// The next pass's layout (`n` rows in `parts` partitions), its
    /// directory created. The tasks create their directories below this one
    /// only: once the pass is over (or abandoned) a late task cannot
    /// recreate it.
    fn new_pass(&mut self, problem: &FilterProblem, n: usize, parts: usize) -> Result<Layout> {
        self.passes += 1;
        let layout = Layout {
            pass_dir: self.run_dir.join(format!("pass-{:06}", self.passes)),
            species: problem.network().species().to_vec(),
            observed: problem.observations().species_used(),
            n,
            parts,
            heartbeat_ms: heartbeat(self.config.stall_timeout),
        };
        std::fs::create_dir(&layout.pass_dir).map_err(|e| {
            Error::Executor(format!(
                "ballista: cannot create {}: {e}",
                layout.pass_dir.display()
            ))
        })?;
        Ok(layout)
    }

    fn pass(
        &mut self,
        problem: &FilterProblem,
        theta: &[f64],
        key: FilterKey,
        stop: Option<&AcceptTest>,
        layout: &Layout,
        out: &mut FilterOutput,
    ) -> Result<()> {
        let data = problem.data();
        let (n, parts) = (layout.n, layout.parts);
        let mut t_prev = problem.t0();
        let mut source: Option<Box<StepWire>> = None;
        let mut counters = [0u64; 4];
        let scoring = problem.observations().at(theta);
        for k in 0..data.len() {
            let t_k = data.times()[k];
            if data.starts_set(k) {
                // A data set's first row: its particles drawn afresh.
                t_prev = problem.sets()[data.set_of(k)].t0;
            }
            let mut wire = StepWire {
                problem: problem.clone(),
                theta: theta.to_vec(),
                key,
                step: k as u64,
                t0: t_prev,
                t1: t_k,
                initial: data.starts_set(k),
                max: 0.0,
                before: Vec::new(),
                total: 0,
            };
            // 1. Form the population, propagate, weight, spill.
            let t = Instant::now();
            let job = StepJob::Advance {
                layout: layout.clone(),
                wire: wire.clone(),
                source: source.take(),
            };
            let (rows, submitted) = self.run_job(&job, &layout.step_dir(k as u64), out)?;
            out.task_retries += reruns(&layout.attempts_dir(k as u64, "advance"), parts);
            let mut m = f64::NEG_INFINITY;
            let mut busy = Vec::with_capacity(parts);
            let mut first_start = f64::INFINITY;
            let mut seen = 0;
            for b in &rows {
                let col = |name: &str| {
                    b.column_by_name(name).ok_or_else(|| {
                        Error::Executor(format!("ballista: no {name} in a step summary"))
                    })
                };
                let max = col("max_log_weight")?.as_primitive::<Float64Type>().clone();
                let bz = col("busy_seconds")?.as_primitive::<Float64Type>().clone();
                let st = col("started_unix_seconds")?
                    .as_primitive::<Float64Type>()
                    .clone();
                let cs: Vec<_> = ["_events", "_cap_hits", "_cap_events", "_limit_hits"]
                    .iter()
                    .map(|c| col(c).map(|a| a.as_primitive::<UInt64Type>().clone()))
                    .collect::<Result<_>>()?;
                for r in 0..b.num_rows() {
                    seen += 1;
                    if !max.is_null(r) {
                        m = m.max(max.value(r));
                    }
                    busy.push(bz.value(r));
                    first_start = first_start.min(st.value(r));
                    for (i, c) in cs.iter().enumerate() {
                        counters[i] += c.value(r);
                    }
                }
            }
            if seen != parts {
                return Err(Error::Executor(format!(
                    "ballista: step {k} returned {seen} partition summaries for {parts} partitions: {}",
                    datafusion::arrow::util::pretty::pretty_format_batches(&rows)
                        .map(|t| t.to_string())
                        .unwrap_or_default()
                )));
            }
            out.counters.add(&SsaCounters {
                events: counters[0],
                cap_hits: counters[1],
                cap_events: counters[2],
                limit_hits: counters[3],
            });
            counters = [0; 4];
            if first_start.is_finite() {
                out.times.scheduling += (first_start - submitted).max(0.0);
            }
            if t_k > t_prev || k == 0 {
                let max = busy.iter().copied().fold(0.0, f64::max);
                let mean = busy.iter().sum::<f64>() / busy.len().max(1) as f64;
                out.balance.record(max, mean);
            }
            out.times.propagate += t.elapsed().as_secs_f64();
            if k > 0 {
                // The previous step's particles have been resampled.
                let _ = std::fs::remove_dir_all(layout.step_dir(k as u64 - 1));
            }
            if m == f64::NEG_INFINITY {
                out.loglik = f64::NEG_INFINITY;
                out.collapsed_at = Some(k);
                out.ess.push(0.0);
                return Ok(());
            }
            wire.max = m;

            // 2. Exact weight sums per partition.
            let t = Instant::now();
            let (rows, _) = self.run_job(
                &StepJob::Sums {
                    layout: layout.clone(),
                    wire: wire.clone(),
                },
                &layout.step_dir(k as u64),
                out,
            )?;
            out.task_retries += reruns(&layout.attempts_dir(k as u64, "sums"), parts);
            let per = read_weight_sums(&rows, parts)?;
            let (total, before) = account_weight_sums(&per, m, n, out);
            out.times.reduce += t.elapsed().as_secs_f64();
            if stop.is_some_and(|s| {
                scoring
                    .as_ref()
                    .is_some_and(|sc| problem.cannot_accept(sc, k + 1, out.loglik, s))
            }) {
                out.stopped_after = Some(k + 1);
                return Ok(());
            }
            if k + 1 < data.len() {
                wire.before = before;
                wire.total = total;
                // Offspring that leave their parent's partition.
                let firsts = first_offspring(&wire, n, parts)
                    .map_err(|e| Error::Executor(format!("ballista: {e}")))?;
                for p in 0..parts {
                    let (s, e) = rank_slice(n, parts, p);
                    let (lo, hi) = (firsts[p], firsts[p + 1]);
                    let stay = hi.min(e as u64).saturating_sub(lo.max(s as u64));
                    out.rows_moved += (hi - lo) - stay;
                }
                source = Some(Box::new(wire));
            }
            t_prev = t_k;
        }
        Ok(())
    }
}

impl PassBatch for BallistaExecutor {
    /// The batch as one job of `P` tasks ([`Smc2PassExec`]), task `p`
    /// running the passes of θ-particles [`rank_slice`]`(M, P, p)`: the
    /// batch travels in the plan, the results come back as rows, and only
    /// the tasks' attempt marks and heartbeats touch the work directory. A
    /// failed job is submitted again (every pass is deterministic).
    fn log_likelihoods(
        &mut self,
        problem: &FilterProblem,
        requests: &[PassRequest<'_>],
    ) -> Result<Vec<f64>> {
        let m = requests.len();
        if m == 0 {
            return Ok(Vec::new());
        }
        let parts = self.config.partitions.min(m);
        let layout = self.new_pass(problem, m, parts)?;
        let job = PassJob::new(problem, requests);
        let res = tokens(parts)
            .map_err(|e| Error::Executor(format!("ballista: {e}")))
            .and_then(|t| {
                let plan = Arc::new(Smc2PassExec::new(layout.clone(), Arc::new(job), t));
                let mut out = FilterOutput::new(0);
                self.run_plan(plan, &layout.step_dir(0), &mut out)
            });
        let _ = std::fs::remove_dir_all(&layout.pass_dir);
        let (rows, _) = res?;
        read_results(&rows, m)
    }
}

impl Drop for BallistaExecutor {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}

/// How often a running task shows it is alive: a tenth of the stall
/// timeout, between 100 ms and 30 s.
fn heartbeat(stall: Duration) -> u64 {
    (stall.as_millis() / 10).clamp(100, 30_000) as u64
}

impl LikelihoodExecutor for BallistaExecutor {
    fn name(&self) -> &str {
        "ballista"
    }

    fn stop_on(&mut self, flag: Arc<std::sync::atomic::AtomicBool>) {
        self.stop = Some(flag);
    }

    fn workers(&self) -> usize {
        self.config.partitions
    }

    fn threads_per_worker(&self) -> usize {
        1
    }

    fn filter(
        &mut self,
        problem: &FilterProblem,
        theta: &[f64],
        key: FilterKey,
        stop: Option<&AcceptTest>,
    ) -> Result<FilterOutput> {
        let data = problem.data();
        let n = problem.particles();
        let net = problem.network();
        let parts = self.config.partitions.min(n);
        if let Some(done) = start_pass(problem, theta, stop, parts)? {
            return Ok(done);
        }
        check_species(net.species())?;
        let mut out = FilterOutput::new(data.len());
        let layout = self.new_pass(problem, n, parts)?;
        let res = self.pass(problem, theta, key, stop, &layout, &mut out);
        let _ = std::fs::remove_dir_all(&layout.pass_dir);
        res?;
        out.bytes_sent = out.rows_moved * 8 * (2 + net.species().len()) as u64;
        Ok(out)
    }
}
