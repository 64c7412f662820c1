//! The plans of a filter step on a cluster and the operators they use.
//!
//! Every step runs two Ballista jobs, each one stage of `P` tasks (task `p`
//! works on the particle slice [`rank_slice`]`(N, P, p)`):
//!
//! 1. **advance**: task `q` forms its slice of the population — at the first
//!    step the particle indices ([`InitialExec`]); afterwards the offspring
//!    of the previous step whose new index lies in its slice, read from the
//!    previous step's propagated partitions that hold their parents
//!    ([`ResampleScanExec`]: the shuffle, pulled from shared storage) —
//!    then runs the dataflow executor's two projections (`pcmc_propagate`,
//!    `pcmc_log_weight`) and writes the propagated slice to the work
//!    directory ([`SpillExec`]), returning one summary row (largest
//!    log-weight, SSA counters, busy time).
//! 2. **sums**: task `p` reads its propagated slice ([`PropScanExec`]) and
//!    aggregates the exact quantised weight sums (`pcmc_weight_sum_*`,
//!    grouped by `pcmc_partition`): one row per partition.
//!
//! The driver holds only those rows. It builds these physical plans itself
//! and submits them as they are (Ballista's physical-plan submission, meant
//! for custom operators that have no logical form): the scheduler splits
//! them into stages but runs no optimiser rules over them, so what runs is
//! exactly what is written here.

use crate::ATTEMPTS;
use datafusion::arrow::array::{ArrayRef, AsArray, Float64Array, RecordBatch, UInt64Array};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Schema, SchemaRef, UInt64Type};
use datafusion::arrow::ipc::reader::FileReader;
use datafusion::arrow::ipc::writer::FileWriter;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DFSchema, DataFusionError, Result as DfResult};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::context::ExecutionProps;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{AggregateUDF, Expr};
use datafusion::physical_expr::aggregate::AggregateExprBuilder;
use datafusion::physical_expr::create_physical_expr;
use datafusion::physical_expr::expressions::col as physical_col;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode, PhysicalGroupBy};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::TryStreamExt;
use pcmc_core::filter::rank_slice;
use pcmc_core::resample::offspring_before;
use pcmc_core::rng::Purpose;
use pcmc_dataflow::offspring::{check_slice, offspring_rows, slice_offspring};
use pcmc_dataflow::params::{Shared, StepWire};
use pcmc_dataflow::smc2::{PassJob, index_slice, result_schema};
use pcmc_dataflow::udf::{COUNTERS, WeightSum, WeightSumUdaf, slice_of};
use pcmc_dataflow::{
    initial_slice, population_schema, propagated_schema, propagation_projections,
    weight_sum_aggregate,
};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Where a filter pass keeps its particles and how they are split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Layout {
    /// The pass's directory in the shared work directory.
    pub pass_dir: PathBuf,
    /// Species names (the particle table's columns).
    pub species: Vec<String>,
    /// Indices of the observed species.
    pub observed: Vec<usize>,
    /// Particles N.
    pub n: usize,
    /// Partitions P (tasks per job).
    pub parts: usize,
    /// How often (ms) a running advance task shows it is alive, by touching
    /// its beat file ([`Layout::beat_file`]): the driver counts a job as
    /// stuck only when nothing in its step directory has changed for its
    /// stall timeout, so a legitimately long task is never given up on.
    pub heartbeat_ms: u64,
}

impl Layout {
    /// The directory of step `k`'s propagated particles.
    pub fn step_dir(&self, k: u64) -> PathBuf {
        self.pass_dir.join(format!("step-{k:05}"))
    }
    /// Partition `p` of step `k`'s propagated particles (Arrow IPC).
    pub fn part_file(&self, k: u64, p: usize) -> PathBuf {
        self.step_dir(k).join(format!("part-{p:05}.arrow"))
    }
    /// The file that partition `p`'s advance task of step `k` touches every
    /// [`Layout::heartbeat_ms`] while it runs.
    pub fn beat_file(&self, k: u64, p: usize) -> PathBuf {
        self.step_dir(k).join("beats").join(format!("p{p:05}"))
    }
    /// Where the tasks of step `k`'s job `job` leave one file per attempt.
    pub fn attempts_dir(&self, k: u64, job: &str) -> PathBuf {
        self.step_dir(k).join(ATTEMPTS).join(job)
    }
}

fn exec_err(msg: impl Into<String>) -> DataFusionError {
    DataFusionError::Execution(msg.into())
}

fn io_err(what: &str, path: &Path, e: impl fmt::Display) -> DataFusionError {
    exec_err(format!("{what} {}: {e}", path.display()))
}

/// This host's name (empty if unknown).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// Creates `dir` and every directory between it and the pass directory,
/// which must exist: the driver makes it before its first job and removes
/// it when the pass ends or the run gives up, so a task still running for
/// a job the driver abandoned (cancelled on the scheduler, but already on
/// an executor) fails here instead of planting files in the work root.
fn make_dirs(layout: &Layout, dir: &Path) -> DfResult<()> {
    let pass = &layout.pass_dir;
    let rest = dir.strip_prefix(pass).map_err(|_| {
        DataFusionError::Internal(format!(
            "{} is not inside the pass directory {}",
            dir.display(),
            pass.display()
        ))
    })?;
    let mut at = pass.clone();
    for c in rest.components() {
        at.push(c);
        match std::fs::create_dir(&at) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(exec_err(format!(
                    "the pass directory {} is gone on host {} (its run ended or gave up, or this executor's work root is not the driver's shared directory)",
                    pass.display(),
                    host_name()
                )));
            }
            Err(e) => return Err(io_err("cannot create", &at, e)),
        }
    }
    if !at.is_dir() {
        return Err(exec_err(format!("{} is not a directory", at.display())));
    }
    Ok(())
}

/// While alive, touches a task's beat file every period (first after one
/// period, so short tasks never do); stops when dropped. A thread, not an
/// async task: the propagation it vouches for keeps the runtime's threads
/// busy.
struct Heartbeat {
    _stop: std::sync::mpsc::Sender<()>,
}

impl Heartbeat {
    fn start(layout: &Layout, file: PathBuf) -> Heartbeat {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let period = std::time::Duration::from_millis(layout.heartbeat_ms.max(1));
        let layout = layout.clone();
        let _ = std::thread::Builder::new()
            .name("pcmc-task-beat".into())
            .spawn(move || {
                let mut beats = 0u64;
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(period)
                {
                    beats += 1;
                    let dir = file.parent().expect("beat files live in a directory");
                    // The content changes with every beat: a new size or
                    // time is what the driver looks for.
                    if make_dirs(&layout, dir).is_err()
                        || std::fs::write(&file, beats.to_string()).is_err()
                    {
                        return; // the pass is gone: nobody is watching
                    }
                }
            });
        Heartbeat { _stop: tx }
    }
}

/// Records an attempt of task `p` in `dir` (one new file per attempt), so
/// that the driver can count the tasks the cluster ran again.
fn mark_attempt(layout: &Layout, dir: &Path, p: usize) -> DfResult<()> {
    make_dirs(layout, dir)?;
    for a in 0..10_000u32 {
        let f = dir.join(format!("p{p:05}-a{a:04}"));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&f)
        {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err("cannot create", &f, e)),
        }
    }
    Err(exec_err(format!(
        "task {p}: too many attempts in {}",
        dir.display()
    )))
}

/// Attempts recorded in `dir` beyond one per task of `parts` tasks: the
/// tasks the cluster ran again.
pub fn reruns(dir: &Path, parts: usize) -> u64 {
    let n = std::fs::read_dir(dir).map_or(0, |d| d.count());
    n.saturating_sub(parts) as u64
}

/// Reads an Arrow IPC file written by [`SpillExec`].
fn read_ipc(path: &Path) -> DfResult<Vec<RecordBatch>> {
    let f = std::fs::File::open(path).map_err(|e| io_err("cannot open", path, e))?;
    let r = FileReader::try_new(f, None)?;
    r.collect::<Result<Vec<_>, _>>().map_err(Into::into)
}

/// Writes `batches` to `path` atomically (a temporary file renamed into
/// place), so that a reader never sees a partial file and a task run again
/// replaces its earlier output with identical content.
fn write_ipc(
    layout: &Layout,
    path: &Path,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> DfResult<()> {
    let dir = path.parent().expect("part files live in a step directory");
    make_dirs(layout, dir)?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let tmp = dir.join(format!(
        ".{}.{}-{nanos}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("part"),
        std::process::id()
    ));
    {
        let f = std::fs::File::create(&tmp).map_err(|e| io_err("cannot create", &tmp, e))?;
        let mut w = FileWriter::try_new(std::io::BufWriter::new(f), schema)?;
        for b in batches {
            w.write(b)?;
        }
        w.finish()?;
        let f = w.into_inner()?;
        f.into_inner()
            .map_err(|e| io_err("cannot write", &tmp, e))?
            .sync_all()
            .map_err(|e| io_err("cannot sync", &tmp, e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| io_err("cannot rename into", path, e))
}

fn leaf_properties(schema: SchemaRef, parts: usize) -> Arc<PlanProperties> {
    Arc::new(PlanProperties::new(
        EquivalenceProperties::new(schema),
        Partitioning::UnknownPartitioning(parts),
        EmissionType::Final,
        Boundedness::Bounded,
    ))
}

fn once_stream<F>(schema: SchemaRef, fut: F) -> SendableRecordBatchStream
where
    F: std::future::Future<Output = DfResult<RecordBatch>> + Send + 'static,
{
    Box::pin(RecordBatchStreamAdapter::new(
        schema,
        futures::stream::once(fut),
    ))
}

/// Name of the partition token's column.
pub const TOKEN: &str = "pcmc_partition";

/// The partition tokens of `parts` partitions: an in-memory scan whose
/// partition `p` is one row holding `p`. Every pcmc operator of a job reads
/// its partition's token to learn which particle slice it works on. Ballista
/// may give one task several partitions and restricts a stage's in-memory
/// scans to the task's partitions (renumbered from 0), so an operator's
/// local partition index is not the slice: the token is.
///
/// # Errors
/// Arrow errors.
pub fn tokens(parts: usize) -> DfResult<Arc<dyn ExecutionPlan>> {
    let schema = Arc::new(Schema::new(vec![Field::new(
        TOKEN,
        DataType::UInt64,
        false,
    )]));
    let batches = (0..parts)
        .map(|p| {
            RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(UInt64Array::from(vec![p as u64])) as ArrayRef],
            )
            .map(|b| vec![b])
        })
        .collect::<Result<Vec<_>, _>>()?;
    let source = MemorySourceConfig::try_new(&batches, schema, None)?;
    Ok(DataSourceExec::from_data_source(source))
}

/// The slice index in a partition's token stream.
async fn read_token(stream: SendableRecordBatchStream) -> DfResult<usize> {
    let batches: Vec<RecordBatch> = stream.try_collect().await?;
    let mut values = batches.iter().flat_map(|b| {
        b.column(0)
            .as_primitive_opt::<UInt64Type>()
            .map(|c| c.values().to_vec())
            .unwrap_or_default()
    });
    match (values.next(), values.next()) {
        (Some(p), None) => Ok(p as usize),
        _ => Err(DataFusionError::Internal(
            "a partition token stream must hold exactly one value".into(),
        )),
    }
}

/// An operator over partition tokens: `execute(k)` reads local partition
/// `k`'s token and runs the slice it names.
macro_rules! token_plan {
    ($t:ty, $name:literal) => {
        impl ExecutionPlan for $t {
            fn name(&self) -> &str {
                $name
            }
            fn properties(&self) -> &Arc<PlanProperties> {
                &self.props
            }
            fn apply_expressions(
                &self,
                _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
            ) -> DfResult<TreeNodeRecursion> {
                Ok(TreeNodeRecursion::Continue)
            }
            fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
                vec![&self.tokens]
            }
            fn with_new_children(
                self: Arc<Self>,
                mut children: Vec<Arc<dyn ExecutionPlan>>,
            ) -> DfResult<Arc<dyn ExecutionPlan>> {
                if children.len() != 1 {
                    return Err(DataFusionError::Internal(format!(
                        "{} has one child (its partition tokens)",
                        $name
                    )));
                }
                let mut me = (*self).clone();
                me.props =
                    token_properties(self.props.eq_properties.schema().clone(), &children[0]);
                me.tokens = children.remove(0);
                Ok(Arc::new(me))
            }
            fn execute(
                &self,
                partition: usize,
                context: Arc<TaskContext>,
            ) -> DfResult<SendableRecordBatchStream> {
                let token = self.tokens.execute(partition, context)?;
                let me = self.clone();
                let schema = self.props.eq_properties.schema().clone();
                let fut = async move {
                    let p = read_token(token).await?;
                    me.run(p).await
                };
                Ok(once_stream(schema, fut))
            }
        }
    };
}

fn token_properties(schema: SchemaRef, tokens: &Arc<dyn ExecutionPlan>) -> Arc<PlanProperties> {
    leaf_properties(schema, tokens.properties().partitioning.partition_count())
}

/// The first step's population: partition `p` holds the indices of its
/// slice (states are drawn by `pcmc_propagate`).
#[derive(Debug, Clone)]
pub struct InitialExec {
    /// The pass's layout.
    pub layout: Layout,
    tokens: Arc<dyn ExecutionPlan>,
    props: Arc<PlanProperties>,
}

impl InitialExec {
    /// The initial population of `layout`, one partition per token.
    pub fn new(layout: Layout, tokens: Arc<dyn ExecutionPlan>) -> Self {
        let props = token_properties(population_schema(&layout.species), &tokens);
        InitialExec {
            layout,
            tokens,
            props,
        }
    }

    async fn run(self, p: usize) -> DfResult<RecordBatch> {
        mark_attempt(&self.layout, &self.layout.attempts_dir(0, "advance"), p)?;
        let schema = self.props.eq_properties.schema().clone();
        initial_slice(&schema, self.layout.n, self.layout.parts, p)
            .map_err(|e| exec_err(e.to_string()))
    }
}

impl DisplayAs for InitialExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "InitialExec: particles={}, partitions={}",
            self.layout.n, self.layout.parts
        )
    }
}

token_plan!(InitialExec, "InitialExec");

/// The population after resampling step `wire.step`: partition `q` reads
/// the propagated partitions of that step whose offspring fall in slice `q`
/// (from the exact weight prefixes the driver broadcasts, every task knows
/// where each partition's offspring go), derives their offspring exactly as
/// the in-process executor does, and keeps those in its slice. This is the
/// shuffle: each reducer pulls the map outputs it needs from shared storage.
#[derive(Debug, Clone)]
pub struct ResampleScanExec {
    /// The pass's layout.
    pub layout: Layout,
    /// The resampled step's values (its maximum, prefixes and total set).
    pub wire: StepWire,
    tokens: Arc<dyn ExecutionPlan>,
    props: Arc<PlanProperties>,
}

impl ResampleScanExec {
    /// The population resampled from step `wire.step`, one partition per
    /// token.
    pub fn new(layout: Layout, wire: StepWire, tokens: Arc<dyn ExecutionPlan>) -> Self {
        let props = token_properties(population_schema(&layout.species), &tokens);
        ResampleScanExec {
            layout,
            wire,
            tokens,
            props,
        }
    }

    async fn run(self, q: usize) -> DfResult<RecordBatch> {
        let k = self.wire.step;
        mark_attempt(&self.layout, &self.layout.attempts_dir(k + 1, "advance"), q)?;
        let out_schema = self.props.eq_properties.schema().clone();
        let layout = self.layout;
        let firsts = first_offspring(&self.wire, layout.n, layout.parts)?;
        let shared = Shared::from_wire(self.wire);
        {
            let (n, parts) = (layout.n, layout.parts);
            let (qs, qe) = rank_slice(n, parts, q);
            let window = qs as u64..qe as u64;
            let prop_schema = propagated_schema(&layout.species);
            let p_params = shared.read();
            let mut out = Vec::new();
            for p in 0..parts {
                let (lo, hi) = (firsts[p], firsts[p + 1]);
                if hi <= window.start || lo >= window.end {
                    continue;
                }
                let batches = read_ipc(&layout.part_file(k, p))?;
                let batch = concat_batches(&prop_schema, &batches)?;
                check_slice(&batch, p, n, parts)?;
                let lw = batch.column(1).as_primitive::<Float64Type>();
                let (first, counts) = slice_offspring(&p_params, lw.values(), p, n, parts)?;
                if first != lo {
                    return Err(DataFusionError::Internal(format!(
                        "ResampleScanExec: partition {p}'s offspring start at {first}, expected {lo}"
                    )));
                }
                out.push(offspring_rows(
                    &batch,
                    first,
                    &counts,
                    window.clone(),
                    out_schema.clone(),
                )?);
            }
            let batch = concat_batches(&out_schema, &out)?;
            if batch.num_rows() != qe - qs {
                return Err(DataFusionError::Internal(format!(
                    "ResampleScanExec: partition {q} received {} offspring for {} places",
                    batch.num_rows(),
                    qe - qs
                )));
            }
            Ok(batch)
        }
    }
}

/// The global index of the first offspring of each partition of step
/// `wire.step` (and N at the end): partition `p`'s offspring are
/// `firsts[p]..firsts[p + 1]`.
///
/// # Errors
/// No weight prefix for some partition.
pub fn first_offspring(wire: &StepWire, n: usize, parts: usize) -> DfResult<Vec<u64>> {
    let scheme = wire.problem.config().resampling;
    let key_k = wire.key.stream(Purpose::Resample, wire.step, 0);
    let mut firsts = Vec::with_capacity(parts + 1);
    for p in 0..parts {
        let before = *wire
            .before
            .get(p)
            .ok_or_else(|| DataFusionError::Internal("no weight prefix".into()))?;
        firsts.push(if parts == 1 {
            0
        } else {
            offspring_before(scheme, before, wire.total, n as u64, key_k)
        });
    }
    firsts.push(n as u64);
    Ok(firsts)
}

impl DisplayAs for ResampleScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "ResampleScanExec: step={}, particles={}, partitions={}",
            self.wire.step, self.layout.n, self.layout.parts
        )
    }
}

token_plan!(ResampleScanExec, "ResampleScanExec");

/// Step `step`'s propagated particles, partition by partition.
#[derive(Debug, Clone)]
pub struct PropScanExec {
    /// The pass's layout.
    pub layout: Layout,
    /// The step.
    pub step: u64,
    tokens: Arc<dyn ExecutionPlan>,
    props: Arc<PlanProperties>,
}

impl PropScanExec {
    /// A scan of step `step`'s propagated particles, one partition per
    /// token.
    pub fn new(layout: Layout, step: u64, tokens: Arc<dyn ExecutionPlan>) -> Self {
        let props = token_properties(propagated_schema(&layout.species), &tokens);
        PropScanExec {
            layout,
            step,
            tokens,
            props,
        }
    }

    async fn run(self, p: usize) -> DfResult<RecordBatch> {
        mark_attempt(
            &self.layout,
            &self.layout.attempts_dir(self.step, "sums"),
            p,
        )?;
        let schema = self.props.eq_properties.schema().clone();
        let batches = read_ipc(&self.layout.part_file(self.step, p))?;
        Ok(concat_batches(&schema, &batches)?)
    }
}

impl DisplayAs for PropScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "PropScanExec: step={}, partitions={}",
            self.step, self.layout.parts
        )
    }
}

token_plan!(PropScanExec, "PropScanExec");

/// What a probe task checks of the shared work directory: that the file
/// [`SharedCheck::FILE`] in the layout's pass directory holds `nonce`, i.e.
/// that the executor sees the driver's directory, not a node-local one at
/// the same path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SharedCheck {
    /// A pass directory of the run (confined like every layout).
    pub layout: Layout,
    /// What the driver wrote.
    pub nonce: String,
    /// Why this executor refused the layout (set when decoding; the check
    /// then reads nothing and reports this).
    #[serde(skip)]
    pub refused: Option<String>,
}

impl SharedCheck {
    /// The nonce file's name in the pass directory.
    pub const FILE: &'static str = "nonce";

    /// Empty if this process sees the nonce, else why not.
    fn verdict(&self) -> String {
        if let Some(why) = &self.refused {
            return why.clone();
        }
        let f = self.layout.pass_dir.join(Self::FILE);
        match std::fs::read_to_string(&f) {
            Ok(s) if s == self.nonce => String::new(),
            Ok(_) => format!("{} holds another run's nonce", f.display()),
            Err(e) => format!("cannot read {}: {e}", f.display()),
        }
    }
}

/// A probe of the cluster: each of its tasks holds its slot for `hold_ms`
/// milliseconds and returns the process id and host name of the executor
/// that ran it (so that a driver can see which executors take tasks) and,
/// with a [`SharedCheck`], whether that executor sees the driver's work
/// directory (empty) or why not.
#[derive(Debug, Clone)]
pub struct ProbeExec {
    /// Milliseconds each task holds its slot.
    pub hold_ms: u64,
    /// The work directory check, if any.
    pub shared: Option<SharedCheck>,
    tokens: Arc<dyn ExecutionPlan>,
    props: Arc<PlanProperties>,
}

impl ProbeExec {
    /// A probe with one task per token.
    pub fn new(hold_ms: u64, tokens: Arc<dyn ExecutionPlan>) -> Self {
        let schema = Arc::new(Schema::new(vec![
            Field::new("pid", DataType::UInt64, false),
            Field::new("host", DataType::Utf8, false),
            Field::new("shared", DataType::Utf8, false),
        ]));
        ProbeExec {
            hold_ms,
            shared: None,
            props: token_properties(schema, &tokens),
            tokens,
        }
    }

    /// The probe that also makes `shared`'s check.
    pub fn checking(mut self, shared: Option<SharedCheck>) -> Self {
        self.shared = shared;
        self
    }

    async fn run(self, _p: usize) -> DfResult<RecordBatch> {
        let s = self.props.eq_properties.schema().clone();
        let hold = std::time::Duration::from_millis(self.hold_ms);
        {
            tokio::time::sleep(hold).await;
            let host = host_name();
            let shared = self
                .shared
                .as_ref()
                .map(SharedCheck::verdict)
                .unwrap_or_default();
            Ok(RecordBatch::try_new(
                s,
                vec![
                    Arc::new(UInt64Array::from(vec![u64::from(std::process::id())])),
                    Arc::new(datafusion::arrow::array::StringArray::from(vec![host])),
                    Arc::new(datafusion::arrow::array::StringArray::from(vec![shared])),
                ],
            )?)
        }
    }
}

impl DisplayAs for ProbeExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "ProbeExec: tasks={}, hold={} ms",
            self.props.partitioning.partition_count(),
            self.hold_ms
        )
    }
}

token_plan!(ProbeExec, "ProbeExec");

/// One batch of SMC²'s filter passes as a job: task `p` runs the passes of
/// the θ-particles in [`rank_slice`]`(M, P, p)` and returns their
/// log-likelihoods (`theta_particle`, `loglik`). The batch travels inside
/// the plan; no particle touches the work directory, where the task only
/// leaves its attempt mark and heartbeat (step 0's directory of the pass),
/// so the driver can tell a long task from a stuck one.
#[derive(Debug, Clone)]
pub struct Smc2PassExec {
    /// The batch's layout (`n` is the number of passes; the species are
    /// the model's).
    pub layout: Layout,
    /// The passes.
    pub job: Arc<PassJob>,
    tokens: Arc<dyn ExecutionPlan>,
    props: Arc<PlanProperties>,
}

impl Smc2PassExec {
    /// The job of `job`'s passes, one task per token.
    pub fn new(layout: Layout, job: Arc<PassJob>, tokens: Arc<dyn ExecutionPlan>) -> Self {
        let props = token_properties(result_schema(), &tokens);
        Smc2PassExec {
            layout,
            job,
            tokens,
            props,
        }
    }

    async fn run(self, p: usize) -> DfResult<RecordBatch> {
        let layout = &self.layout;
        if p >= layout.parts {
            return Err(exec_err(format!(
                "Smc2PassExec: task {p} of {} partitions",
                layout.parts
            )));
        }
        mark_attempt(layout, &layout.attempts_dir(0, "passes"), p)?;
        let beat = Heartbeat::start(layout, layout.beat_file(0, p));
        let out = self
            .job
            .run_rows(&index_slice(self.job.passes.len(), layout.parts, p));
        drop(beat);
        out
    }
}

impl DisplayAs for Smc2PassExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "Smc2PassExec: passes={}, partitions={}, particles={}",
            self.job.passes.len(),
            self.layout.parts,
            self.job.problem.particles()
        )
    }
}

token_plan!(Smc2PassExec, "Smc2PassExec");

/// Columns of the advance job's summary rows (one per partition).
pub const SUMMARY: [&str; 9] = [
    "partition",
    "rows",
    "max_log_weight",
    "_events",
    "_cap_hits",
    "_cap_events",
    "_limit_hits",
    "busy_seconds",
    "started_unix_seconds",
];

/// The schema of [`SUMMARY`].
pub fn summary_schema() -> SchemaRef {
    Arc::new(Schema::new(
        SUMMARY
            .iter()
            .map(|c| {
                let t = match *c {
                    "max_log_weight" | "busy_seconds" | "started_unix_seconds" => DataType::Float64,
                    _ => DataType::UInt64,
                };
                Field::new(*c, t, *c == "max_log_weight")
            })
            .collect::<Vec<_>>(),
    ))
}

/// Writes each partition of its input (the propagated particles of step
/// `step`) to the work directory and returns one summary row per partition:
/// rows, largest log-weight, SSA counters, busy time, start time.
#[derive(Debug)]
pub struct SpillExec {
    /// The pass's layout.
    pub layout: Layout,
    /// The step.
    pub step: u64,
    input: Arc<dyn ExecutionPlan>,
    props: Arc<PlanProperties>,
}

impl SpillExec {
    /// Spills `input` as step `step`'s propagated particles.
    pub fn new(input: Arc<dyn ExecutionPlan>, layout: Layout, step: u64) -> Self {
        let props = token_properties(summary_schema(), &input);
        SpillExec {
            layout,
            step,
            input,
            props,
        }
    }
}

impl DisplayAs for SpillExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "SpillExec: step={}, dir={}",
            self.step,
            self.layout.step_dir(self.step).display()
        )
    }
}

impl ExecutionPlan for SpillExec {
    fn name(&self) -> &str {
        "SpillExec"
    }
    fn properties(&self) -> &Arc<PlanProperties> {
        &self.props
    }
    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }
    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(DataFusionError::Internal("SpillExec has one child".into()));
        }
        Ok(Arc::new(SpillExec::new(
            children.remove(0),
            self.layout.clone(),
            self.step,
        )))
    }
    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let started = Instant::now();
        let started_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let input = self.input.execute(partition, context)?;
        let in_schema = self.input.schema();
        let layout = self.layout.clone();
        let step = self.step;
        Ok(once_stream(summary_schema(), async move {
            let beat = Heartbeat::start(&layout, layout.beat_file(step, partition));
            let batches: Vec<RecordBatch> = input.try_collect().await?;
            drop(beat);
            // The slice these particles belong to names the file.
            let first = batches
                .iter()
                .find(|b| b.num_rows() > 0)
                .and_then(|b| b.column(0).as_primitive_opt::<UInt64Type>())
                .map(|c| c.value(0))
                .ok_or_else(|| exec_err("SpillExec: a partition without particles"))?;
            let partition = slice_of(first, layout.n, layout.parts);
            write_ipc(
                &layout,
                &layout.part_file(step, partition),
                &in_schema,
                &batches,
            )?;
            let mut rows = 0u64;
            let mut max = f64::NEG_INFINITY;
            let mut counters = [0u64; 4];
            for b in &batches {
                rows += b.num_rows() as u64;
                let lw = b
                    .column_by_name("log_weight")
                    .and_then(|c| c.as_primitive_opt::<Float64Type>())
                    .ok_or_else(|| exec_err("SpillExec: no log_weight column"))?;
                max = lw.values().iter().copied().fold(max, f64::max);
                for (i, c) in COUNTERS.iter().enumerate() {
                    let col = b
                        .column_by_name(c)
                        .and_then(|c| c.as_primitive_opt::<UInt64Type>())
                        .ok_or_else(|| exec_err(format!("SpillExec: no {c} column")))?;
                    counters[i] += col.values().iter().sum::<u64>();
                }
            }
            let mut cols: Vec<ArrayRef> = vec![
                Arc::new(UInt64Array::from(vec![partition as u64])),
                Arc::new(UInt64Array::from(vec![rows])),
                Arc::new(Float64Array::from(vec![
                    (max > f64::NEG_INFINITY).then_some(max),
                ])),
            ];
            cols.extend(
                counters
                    .iter()
                    .map(|c| Arc::new(UInt64Array::from(vec![*c])) as ArrayRef),
            );
            cols.push(Arc::new(Float64Array::from(vec![
                started.elapsed().as_secs_f64(),
            ])));
            cols.push(Arc::new(Float64Array::from(vec![started_unix])));
            Ok(RecordBatch::try_new(summary_schema(), cols)?)
        }))
    }
}

/// One of the two jobs of a step.
#[derive(Debug, Clone)]
pub enum StepJob {
    /// Step `wire.step`: form the population (initial, or resampled from
    /// `source`, the previous step), propagate, weight, spill; summary rows.
    Advance {
        /// The pass's layout.
        layout: Layout,
        /// The step's values.
        wire: StepWire,
        /// The previous step's values, when resampling from it.
        source: Option<Box<StepWire>>,
    },
    /// Step `wire.step`'s exact weight sums per partition (`wire.max` set).
    Sums {
        /// The pass's layout.
        layout: Layout,
        /// The step's values.
        wire: StepWire,
    },
}

impl StepJob {
    /// The result's schema.
    pub fn schema(&self) -> SchemaRef {
        match self {
            StepJob::Advance { .. } => summary_schema(),
            StepJob::Sums { .. } => {
                let dec = DataType::Decimal128(38, 0);
                Arc::new(Schema::new(vec![
                    Field::new("partition", DataType::UInt64, true),
                    Field::new("total", dec.clone(), true),
                    Field::new("high", dec.clone(), true),
                    Field::new("high_squared", dec, true),
                ]))
            }
        }
    }

    /// The job's physical plan.
    ///
    /// # Errors
    /// Planning errors.
    pub fn plan(&self) -> DfResult<Arc<dyn ExecutionPlan>> {
        match self {
            StepJob::Advance {
                layout,
                wire,
                source,
            } => {
                let tokens = tokens(layout.parts)?;
                let src: Arc<dyn ExecutionPlan> = match source {
                    None => Arc::new(InitialExec::new(layout.clone(), tokens)),
                    Some(prev) => Arc::new(ResampleScanExec::new(
                        layout.clone(),
                        (**prev).clone(),
                        tokens,
                    )),
                };
                let shared = Shared::from_wire(wire.clone());
                let (first, second) = propagation_projections(
                    &shared,
                    &layout.species,
                    &layout.observed,
                    layout.n,
                    layout.parts,
                );
                let p1 = projection(first, src)?;
                let p2 = projection(second, p1)?;
                Ok(Arc::new(SpillExec::new(p2, layout.clone(), wire.step)))
            }
            StepJob::Sums { layout, wire } => {
                let scan: Arc<dyn ExecutionPlan> = Arc::new(PropScanExec::new(
                    layout.clone(),
                    wire.step,
                    tokens(layout.parts)?,
                ));
                let shared = Shared::from_wire(wire.clone());
                let (group, aggs) = weight_sum_aggregate(&shared, layout.n, layout.parts);
                let schema = scan.schema();
                let df = DFSchema::try_from(schema.as_ref().clone())?;
                let group = group
                    .into_iter()
                    .map(|e| named(e, &df))
                    .collect::<DfResult<Vec<_>>>()?;
                let lw = physical_col("log_weight", &schema)?;
                let mut aggr = Vec::with_capacity(aggs.len());
                for (e, which) in
                    aggs.iter()
                        .zip([WeightSum::Total, WeightSum::High, WeightSum::HighSquared])
                {
                    let udaf = Arc::new(AggregateUDF::new_from_impl(WeightSumUdaf::new(
                        shared.clone(),
                        which,
                    )));
                    aggr.push(Arc::new(
                        AggregateExprBuilder::new(udaf, vec![lw.clone()])
                            .schema(schema.clone())
                            .alias(e.schema_name().to_string())
                            .build()?,
                    ));
                }
                let filters = vec![None; aggr.len()];
                Ok(Arc::new(AggregateExec::try_new(
                    AggregateMode::SinglePartitioned,
                    PhysicalGroupBy::new_single(group),
                    aggr,
                    filters,
                    scan,
                    schema,
                )?))
            }
        }
    }
}

/// `e` as a physical expression over `df` and its output name.
fn named(e: Expr, df: &DFSchema) -> DfResult<(Arc<dyn PhysicalExpr>, String)> {
    let (inner, name) = match e {
        Expr::Alias(a) => (*a.expr, a.name),
        other => {
            let name = other.schema_name().to_string();
            (other, name)
        }
    };
    Ok((
        create_physical_expr(
            &inner,
            df,
            &ExecutionProps::new(),
            &PhysicalPlanningContext::default(),
        )?,
        name,
    ))
}

fn projection(exprs: Vec<Expr>, input: Arc<dyn ExecutionPlan>) -> DfResult<Arc<dyn ExecutionPlan>> {
    let df = DFSchema::try_from(input.schema().as_ref().clone())?;
    let exprs = exprs
        .into_iter()
        .map(|e| named(e, &df).map(|(expr, alias)| ProjectionExpr { expr, alias }))
        .collect::<DfResult<Vec<_>>>()?;
    Ok(Arc::new(ProjectionExec::try_new(exprs, input)?))
}
