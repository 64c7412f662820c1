//! # pcmc-dataflow
//!
//! The dataflow ("Spark-like") executor on Arrow + DataFusion. The particles
//! are an Arrow table — `particle` (the global index), `log_weight` and one
//! `UInt64` column per species — split into `P` partitions, partition `p`
//! holding the balanced contiguous slice [`rank_slice`]`(N, P, p)`. Each
//! observation step runs four plans, built once per filter shape and run at
//! every step with the step's scalars broadcast to the tasks:
//!
//! 1. **propagate** (partition-local, one task per partition): the volatile
//!    scalar UDF `pcmc_propagate` runs the core's SSA kernel over the
//!    species columns, each particle on the stream keyed by its global
//!    index, and `pcmc_log_weight` computes the observation log-density. A
//!    task that fails is run again from its input partition, up to
//!    [`DataflowConfig::max_attempts`] times.
//! 2. **reduce**: the largest log-weight and the SSA counters as built-in
//!    aggregates (`max`, `sum`).
//! 3. **reduce**: the exact u128 sums of the quantised weights per partition,
//!    as the custom aggregate `pcmc_weight_sum` (Decimal128 results, so the
//!    order of the reduction cannot change a bit).
//! 4. **shuffle**: each partition sorts its particles by index, derives their
//!    offspring from the global weight prefix before it and the step's keyed
//!    uniform (`OffspringExec`, a partition-local operator), and a range
//!    repartition on the offspring's new global index forms the new
//!    population — no partition ever gathers all particles, and the driver
//!    holds only scalars (the maximum, `P` partition sums, the counters).
//!
//! Every draw is keyed by the particle's global index and every reduction is
//! exact, so the chain is bit for bit the serial executor's for any number of
//! partitions and threads.
//!
//! For SMC² ([`smc2`]) the same executor partitions θ-particles instead of
//! particles: a batch of filter passes is a table of θ-particle indices in
//! `P` partitions, mapped by the volatile UDF `pcmc_smc2_pass`, one task per
//! partition, retried like the propagation tasks.

#![deny(missing_docs)]

pub mod offspring;
pub mod params;
pub mod slot;
pub mod smc2;
pub mod udf;

use crate::offspring::OffspringExec;
use crate::params::{Shared, SharedRef};
use crate::slot::{Partitions, Slot, SlotExec, SlotTable};
use crate::udf::{COUNTERS, LogWeight, PartitionOf, Propagate, WeightSum, WeightSumUdaf};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt64Type};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{Column, DataFusionError, ScalarValue, SplitPoint};
use datafusion::execution::TaskContext;
use datafusion::functions::core::expr_fn::get_field;
use datafusion::functions_aggregate::expr_fn::{max, sum};
use datafusion::logical_expr::{AggregateUDF, Expr, ScalarUDF};
use datafusion::physical_expr::expressions::col as physical_col;
use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr, RangePartitioning};
use datafusion::physical_plan::execution_plan::reset_plan_states;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::{ExecutionPlan, Partitioning, displayable};
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::TryStreamExt;
use pcmc_core::accept::AcceptTest;
use pcmc_core::filter::{FilterKey, FilterOutput, FilterProblem, rank_slice};
use pcmc_core::smc2::{PassBatch, PassRequest};
use pcmc_core::ssa::SsaCounters;
use pcmc_core::{Error, LikelihoodExecutor, Result};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Settings of the dataflow executor.
#[derive(Debug, Clone, PartialEq)]
pub struct DataflowConfig {
    /// Number of particle partitions `P` (at most N are used).
    pub partitions: usize,
    /// Threads of the runtime that runs the tasks.
    pub threads: usize,
    /// Attempts per propagation task before the run fails.
    pub max_attempts: u32,
    /// Test-only fault injection: probability that a propagation task
    /// attempt fails.
    pub fail_rate: f64,
}

/// Environment variable giving the injected failure probability (tests).
pub const FAIL_RATE_ENV: &str = "PCMC_DATAFLOW_FAIL_RATE";
/// Environment variable giving the attempts per task (default 4).
pub const MAX_ATTEMPTS_ENV: &str = "PCMC_DATAFLOW_MAX_ATTEMPTS";

impl DataflowConfig {
    /// `partitions` partitions on `threads` threads, 4 attempts per task, no
    /// injected failures.
    pub fn new(partitions: usize, threads: usize) -> Self {
        DataflowConfig {
            partitions,
            threads,
            max_attempts: 4,
            fail_rate: 0.0,
        }
    }

    /// As [`DataflowConfig::new`], with [`FAIL_RATE_ENV`] and
    /// [`MAX_ATTEMPTS_ENV`] read from the environment.
    ///
    /// # Errors
    /// [`Error::Setting`] for values that do not parse or are out of range.
    pub fn from_env(partitions: usize, threads: usize) -> Result<Self> {
        let mut c = DataflowConfig::new(partitions, threads);
        if let Ok(v) = std::env::var(FAIL_RATE_ENV) {
            c.fail_rate = v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| {
                    Error::setting(
                        FAIL_RATE_ENV,
                        format!("{v:?} is not a probability in [0, 1]"),
                    )
                })?;
        }
        if let Ok(v) = std::env::var(MAX_ATTEMPTS_ENV) {
            c.max_attempts = v
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|a| *a >= 1)
                .ok_or_else(|| {
                    Error::setting(
                        MAX_ATTEMPTS_ENV,
                        format!("{v:?} is not a count of at least 1"),
                    )
                })?;
        }
        Ok(c)
    }
}

/// Checks that every species can name a column of the particle table:
/// `particle` and `log_weight` are taken, and names starting with `_` are
/// reserved for the plans' own columns.
///
/// # Errors
/// [`Error::Setting`] naming `model.species` and the offending name.
pub fn check_species(species: &[String]) -> Result<()> {
    for s in species {
        if s == "particle" || s == "log_weight" || s.starts_with('_') {
            return Err(Error::setting(
                "model.species",
                format!(
                    "the dataflow executor cannot name a column {s:?} (particle, log_weight and names starting with _ are its own): rename the species"
                ),
            ));
        }
    }
    Ok(())
}

/// What the plans are built for: they are rebuilt when it changes.
#[derive(Debug, Clone, PartialEq)]
struct Shape {
    n: usize,
    species: Vec<String>,
    observed: Vec<usize>,
}

/// The four plans of a step and the tables they read.
struct Plans {
    shape: Shape,
    parts: usize,
    pop: Arc<Slot>,
    prop: Arc<Slot>,
    propagate: Arc<dyn ExecutionPlan>,
    reduce: Arc<dyn ExecutionPlan>,
    sums: Arc<dyn ExecutionPlan>,
    resample: Arc<dyn ExecutionPlan>,
    task_ctx: Arc<TaskContext>,
}

/// The dataflow executor (see the crate docs).
pub struct DataflowExecutor {
    config: DataflowConfig,
    runtime: tokio::runtime::Runtime,
    shared: SharedRef,
    /// Plans for the last few shapes, the most recent last: chains whose
    /// particle counts differ (`filter.particles = "auto"`) take turns.
    plans: Vec<Plans>,
    /// SMC²'s pass plan, once a batch of passes has run.
    passes: Option<PassPlan>,
    /// SMC² pass tasks run again after a failure, over all batches.
    pass_retries: u64,
}

/// SMC²'s plan: `theta_particle, pcmc_smc2_pass(theta_particle)` over the
/// batch's table of θ-particle indices.
struct PassPlan {
    parts: usize,
    table: Arc<Slot>,
    plan: Arc<dyn ExecutionPlan>,
    task_ctx: Arc<TaskContext>,
    broadcast: Arc<smc2::PassBroadcast>,
}

/// Shapes whose plans are kept.
const PLAN_CACHE: usize = 4;

fn df_err(e: DataFusionError) -> Error {
    Error::Executor(format!("dataflow: {e}"))
}

fn column(name: &str) -> Expr {
    Expr::Column(Column::new_unqualified(name))
}

fn elapsed(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

impl DataflowExecutor {
    /// An executor with `config`.
    ///
    /// # Errors
    /// [`Error::Setting`] for zero partitions or threads; [`Error::Executor`]
    /// if the runtime cannot start.
    pub fn new(config: DataflowConfig) -> Result<Self> {
        if config.partitions == 0 {
            return Err(Error::setting("--partitions", "must be at least 1"));
        }
        if config.threads == 0 {
            return Err(Error::setting("--threads", "must be at least 1"));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.threads)
            .thread_name("pcmc-dataflow")
            .build()
            .map_err(|e| Error::Executor(format!("dataflow: cannot start the runtime: {e}")))?;
        Ok(DataflowExecutor {
            shared: Shared::new(config.fail_rate),
            config,
            runtime,
            plans: Vec::new(),
            passes: None,
            pass_retries: 0,
        })
    }

    /// The settings.
    pub fn config(&self) -> &DataflowConfig {
        &self.config
    }

    /// SMC² pass tasks run again after a failure, over all batches so far.
    pub fn pass_task_retries(&self) -> u64 {
        self.pass_retries
    }

    /// The physical plans of one step for `problem`, as indented text
    /// (`propagate`, `reduce`, `sums`, `resample`), building them if needed.
    ///
    /// # Errors
    /// Planning failures.
    pub fn explain(&mut self, problem: &FilterProblem) -> Result<Vec<(String, String)>> {
        self.ensure_plans(problem)?;
        let p = self.plans.last().expect("plans were just built");
        Ok([
            ("propagate", &p.propagate),
            ("reduce", &p.reduce),
            ("sums", &p.sums),
            ("resample", &p.resample),
        ]
        .into_iter()
        .map(|(n, plan)| {
            (
                n.to_string(),
                displayable(plan.as_ref()).indent(true).to_string(),
            )
        })
        .collect())
    }

    /// Makes the plans for `problem`'s shape the current ones (the last),
    /// building them unless they are cached; returns the seconds spent.
    fn ensure_plans(&mut self, problem: &FilterProblem) -> Result<f64> {
        let net = problem.network();
        let shape = Shape {
            n: problem.particles(),
            species: net.species().to_vec(),
            observed: problem.observations().species_used(),
        };
        if let Some(i) = self.plans.iter().position(|p| p.shape == shape) {
            let p = self.plans.remove(i);
            self.plans.push(p);
            return Ok(0.0);
        }
        check_species(&shape.species)?;
        let t = Instant::now();
        let parts = self.config.partitions.min(shape.n);
        let shared = self.shared.clone();
        let plans = self
            .runtime
            .block_on(build_plans(shape, parts, self.config.partitions, shared))
            .map_err(df_err)?;
        if self.plans.len() == PLAN_CACHE {
            self.plans.remove(0);
        }
        self.plans.push(plans);
        Ok(elapsed(t))
    }
}

/// A session for `target` partitions whose optimiser keeps each plan's
/// partitions as they are (no round-robin repartition).
fn session(target: usize) -> SessionContext {
    let mut config = SessionConfig::new()
        .with_target_partitions(target.max(1))
        .with_batch_size(8192);
    config
        .options_mut()
        .optimizer
        .enable_round_robin_repartition = false;
    SessionContext::new_with_config(config)
}

async fn build_pass_plan(parts: usize, shared: SharedRef) -> datafusion::common::Result<PassPlan> {
    let ctx = session(parts);
    let table = Slot::new("theta_particles", smc2::index_schema(), parts);
    let broadcast = Arc::new(smc2::PassBroadcast::default());
    let pass = ScalarUDF::new_from_impl(smc2::Smc2Pass::new(shared, broadcast.clone()));
    let plan = ctx
        .read_table(Arc::new(SlotTable::new(table.clone())))?
        .select(vec![
            column(smc2::INDEX),
            pass.call(vec![column(smc2::INDEX)]).alias(smc2::LOGLIK),
        ])?
        .create_physical_plan()
        .await?;
    let got = plan.properties().partitioning.partition_count();
    if got != parts {
        return Err(DataFusionError::Internal(format!(
            "the SMC² pass plan has {got} partitions for {parts}"
        )));
    }
    Ok(PassPlan {
        parts,
        table,
        plan,
        task_ctx: ctx.task_ctx(),
        broadcast,
    })
}

async fn build_plans(
    shape: Shape,
    parts: usize,
    target: usize,
    shared: SharedRef,
) -> datafusion::common::Result<Plans> {
    let ctx = session(target);
    // These rules push `get_field(_state, …)` below the projection that
    // computes `_state`, substituting the (volatile) propagation into every
    // field access: it would run once per species instead of once per row.
    for rule in ["extract_leaf_expressions", "push_down_leaf_projections"] {
        ctx.remove_optimizer_rule(rule);
    }
    let n = shape.n;
    let pop_schema = population_schema(&shape.species);
    let prop_schema = propagated_schema(&shape.species);
    let pop = Slot::new("particles", pop_schema.clone(), parts);
    let prop = Slot::new("propagated", prop_schema.clone(), parts);

    // 1. Propagate and weight, partition by partition.
    let (first, second) =
        propagation_projections(&shared, &shape.species, &shape.observed, n, parts);
    let propagate = ctx
        .read_table(Arc::new(SlotTable::new(pop.clone())))?
        .select(first)?
        .select(second)?
        .create_physical_plan()
        .await?;

    // 2. The largest log-weight and the counters.
    let mut aggs = vec![max(column("log_weight")).alias("max_log_weight")];
    aggs.extend(COUNTERS.iter().map(|c| sum(column(c)).alias(*c)));
    let reduce = ctx
        .read_table(Arc::new(SlotTable::new(prop.clone())))?
        .aggregate(vec![], aggs)?
        .create_physical_plan()
        .await?;

    // 3. Exact weight sums per partition.
    let (group, aggs) = weight_sum_aggregate(&shared, n, parts);
    let sums = ctx
        .read_table(Arc::new(SlotTable::new(prop.clone())))?
        .aggregate(group, aggs)?
        .create_physical_plan()
        .await?;

    // 4. Offspring per partition, then the range shuffle.
    let scan: Arc<dyn ExecutionPlan> = Arc::new(SlotExec::new(prop.clone(), None)?);
    let resample = resample_plan(scan, shared, &shape.species, n, parts)?;
    Ok(Plans {
        shape,
        parts,
        pop,
        prop,
        propagate,
        reduce,
        sums,
        resample,
        task_ctx: ctx.task_ctx(),
    })
}

/// The particle table: `particle`, `log_weight` and one `UInt64` column per
/// species.
pub fn population_schema(species: &[String]) -> SchemaRef {
    let mut fields = vec![
        Field::new("particle", DataType::UInt64, false),
        Field::new("log_weight", DataType::Float64, false),
    ];
    fields.extend(
        species
            .iter()
            .map(|s| Field::new(s, DataType::UInt64, false)),
    );
    Arc::new(Schema::new(fields))
}

/// The propagated table: the particle table plus the SSA counters of each
/// row ([`COUNTERS`]).
pub fn propagated_schema(species: &[String]) -> SchemaRef {
    let mut fields: Vec<Field> = population_schema(species)
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.extend(
        COUNTERS
            .iter()
            .map(|c| Field::new(*c, DataType::UInt64, false)),
    );
    Arc::new(Schema::new(fields))
}

/// The two projections of the propagation step over the particle table:
/// first `particle` and the struct `_state = pcmc_propagate(particle,
/// species…)`, then the propagated table's columns, with `log_weight =
/// pcmc_log_weight(_state._alive, observed species…)`. Two projections so
/// that the (volatile) propagation runs once per row.
pub fn propagation_projections(
    shared: &SharedRef,
    species: &[String],
    observed: &[usize],
    n: usize,
    parts: usize,
) -> (Vec<Expr>, Vec<Expr>) {
    let propagate = ScalarUDF::new_from_impl(Propagate::new(shared.clone(), species, n, parts));
    let weight = ScalarUDF::new_from_impl(LogWeight::new(shared.clone(), observed.len()));
    let mut args = vec![column("particle")];
    args.extend(species.iter().map(|s| column(s)));
    let first = vec![column("particle"), propagate.call(args).alias("_state")];
    let st = || column("_state");
    let mut wargs = vec![get_field(st(), udf::ALIVE)];
    wargs.extend(
        observed
            .iter()
            .map(|s| get_field(st(), species[*s].as_str())),
    );
    let mut second = vec![column("particle"), weight.call(wargs).alias("log_weight")];
    second.extend(species.iter().map(|s| get_field(st(), s.as_str()).alias(s)));
    second.extend(COUNTERS.iter().map(|c| get_field(st(), *c).alias(*c)));
    (first, second)
}

/// The grouping and aggregates of the exact weight sums: per partition
/// (`pcmc_partition(particle)`), `total`, `high` and `high_squared`.
pub fn weight_sum_aggregate(shared: &SharedRef, n: usize, parts: usize) -> (Vec<Expr>, Vec<Expr>) {
    let part_of = ScalarUDF::new_from_impl(PartitionOf::new(shared.clone(), n, parts));
    let ws = |w| AggregateUDF::new_from_impl(WeightSumUdaf::new(shared.clone(), w));
    (
        vec![part_of.call(vec![column("particle")]).alias("partition")],
        vec![
            ws(WeightSum::Total)
                .call(vec![column("log_weight")])
                .alias("total"),
            ws(WeightSum::High)
                .call(vec![column("log_weight")])
                .alias("high"),
            ws(WeightSum::HighSquared)
                .call(vec![column("log_weight")])
                .alias("high_squared"),
        ],
    )
}

/// Resampling over a scan of the propagated table (`parts` partitions, each
/// its slice): sort each partition by particle, derive the offspring
/// ([`OffspringExec`]) and range-repartition them on their new index (the
/// shuffle), so that partition `p` of the result is the new population's
/// slice `p`.
///
/// # Errors
/// Planning errors.
pub fn resample_plan(
    scan: Arc<dyn ExecutionPlan>,
    shared: SharedRef,
    species: &[String],
    n: usize,
    parts: usize,
) -> datafusion::common::Result<Arc<dyn ExecutionPlan>> {
    let pop_schema = population_schema(species);
    let by_particle = |schema: &SchemaRef| -> datafusion::common::Result<LexOrdering> {
        LexOrdering::new(vec![PhysicalSortExpr::new_default(physical_col(
            "particle", schema,
        )?)])
        .ok_or_else(|| DataFusionError::Internal("empty ordering".into()))
    };
    let sorted: Arc<dyn ExecutionPlan> = Arc::new(
        SortExec::new(by_particle(&scan.schema())?, scan).with_preserve_partitioning(true),
    );
    let off: Arc<dyn ExecutionPlan> = Arc::new(OffspringExec::new(
        sorted,
        shared,
        pop_schema.clone(),
        n,
        parts,
    ));
    let split: Vec<SplitPoint> = (1..parts)
        .map(|b| {
            SplitPoint::new(vec![ScalarValue::UInt64(Some(
                rank_slice(n, parts, b).0 as u64,
            ))])
        })
        .collect();
    let range = RangePartitioning::try_new(by_particle(&pop_schema)?, split)?;
    Ok(Arc::new(RepartitionExec::try_new(
        off,
        Partitioning::Range(range),
    )?))
}

/// What every dataflow pass checks first, for `parts` partitions: a θ that
/// cannot be filtered (estimate −∞) or a proposal that cannot be accepted
/// whatever the data give ends the pass at once (`Some` output); resampling
/// that needs every weight in one place is refused on several partitions.
///
/// # Errors
/// [`Error::Setting`] naming `filter.resampling`.
pub fn start_pass(
    problem: &FilterProblem,
    theta: &[f64],
    stop: Option<&AcceptTest>,
    parts: usize,
) -> Result<Option<FilterOutput>> {
    let mut out = FilterOutput::new(problem.data().len());
    let scoring = match problem.theta_is_valid(theta) {
        true => problem.observations().at(theta),
        false => None,
    };
    let Some(scoring) = scoring else {
        out.loglik = f64::NEG_INFINITY;
        return Ok(Some(out));
    };
    if stop.is_some_and(|s| problem.cannot_accept(&scoring, 0, 0.0, s)) {
        out.stopped_after = Some(0);
        return Ok(Some(out));
    }
    if parts > 1 && !problem.config().resampling.is_distributable() {
        return Err(Error::setting(
            "filter.resampling",
            format!(
                "{:?} resampling needs every weight in one place; with several partitions use systematic or stratified",
                problem.config().resampling
            ),
        ));
    }
    Ok(None)
}

/// The exact weight sums `[total, high, high²]` of each of `parts`
/// partitions from the rows of a weight-sum aggregate (columns
/// `partition`, `total`, `high`, `high_squared`).
///
/// # Errors
/// [`Error::Executor`] for a missing column or a partition out of range.
pub fn read_weight_sums(batches: &[RecordBatch], parts: usize) -> Result<Vec<[u128; 3]>> {
    let mut per = vec![[0u128; 3]; parts];
    for b in batches {
        let part = b
            .column_by_name("partition")
            .and_then(|c| c.as_primitive_opt::<UInt64Type>())
            .ok_or_else(|| Error::Executor("dataflow: no partition column".into()))?;
        for r in 0..b.num_rows() {
            let p = part.value(r) as usize;
            let slot = per.get_mut(p).ok_or_else(|| {
                Error::Executor(format!(
                    "dataflow: a weight sum for partition {p} of {parts}"
                ))
            })?;
            for (j, name) in ["total", "high", "high_squared"].iter().enumerate() {
                let c = b
                    .column_by_name(name)
                    .ok_or_else(|| Error::Executor(format!("dataflow: no {name} column")))?;
                slot[j] += udf::decimal_u128(c.as_ref(), r).unwrap_or(0);
            }
        }
    }
    Ok(per)
}

/// Adds a step's likelihood increment `m + ln(Σq/2^62) − ln N` and its
/// effective sample size to `out`, from the partitions' exact sums `per`
/// and the step's largest log-weight `m`; returns the total and the sum of
/// the partitions before each partition (the resampling prefixes).
pub fn account_weight_sums(
    per: &[[u128; 3]],
    m: f64,
    n: usize,
    out: &mut FilterOutput,
) -> (u128, Vec<u128>) {
    let total: u128 = per.iter().map(|x| x[0]).sum();
    let a1: u128 = per.iter().map(|x| x[1]).sum();
    let a2: u128 = per.iter().map(|x| x[2]).sum();
    out.loglik += pcmc_core::resample::log_mean_weight(m, total, n);
    out.ess.push(if a2 == 0 {
        1.0
    } else {
        (a1 as f64) * (a1 as f64) / (a2 as f64)
    });
    let mut c = 0u128;
    let before = per
        .iter()
        .map(|x| {
            let b = c;
            c += x[0];
            b
        })
        .collect();
    (total, before)
}

/// The initial population: particle indices of each partition's slice
/// (species and log-weights zero: the first step draws the initial states).
///
/// # Errors
/// Arrow errors.
pub fn initial_population(schema: &SchemaRef, n: usize, parts: usize) -> Result<Partitions> {
    (0..parts)
        .map(|p| Ok(vec![initial_slice(schema, n, parts, p)?]))
        .collect()
}

/// Partition `p` of [`initial_population`].
///
/// # Errors
/// Arrow errors.
pub fn initial_slice(schema: &SchemaRef, n: usize, parts: usize, p: usize) -> Result<RecordBatch> {
    let species = schema.fields().len() - 2;
    let (s, e) = rank_slice(n, parts, p);
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(UInt64Array::from_iter_values(s as u64..e as u64)),
        Arc::new(Float64Array::from(vec![0.0; e - s])),
    ];
    let zeros: ArrayRef = Arc::new(UInt64Array::from(vec![0u64; e - s]));
    cols.extend(std::iter::repeat_n(zeros, species));
    RecordBatch::try_new(schema.clone(), cols)
        .map_err(|e| Error::Executor(format!("dataflow: {e}")))
}

/// Runs every partition of `plan` as its own task, retrying a
/// failed task from its input up to `max_attempts` times. Returns the
/// partitions, the number of retries and each task's busy time (seconds,
/// retries included).
async fn run_tasks(
    plan: Arc<dyn ExecutionPlan>,
    ctx: Arc<TaskContext>,
    shared: SharedRef,
    parts: usize,
    max_attempts: u32,
) -> Result<(Partitions, u64, Vec<f64>)> {
    let mut handles = Vec::with_capacity(parts);
    for p in 0..parts {
        let (plan, ctx, shared) = (plan.clone(), ctx.clone(), shared.clone());
        handles.push(tokio::spawn(async move {
            let started = Instant::now();
            let mut last = None;
            for attempt in 0..max_attempts {
                shared.set_attempt(p, attempt);
                let run = async {
                    plan.execute(p, ctx.clone())?
                        .try_collect::<Vec<RecordBatch>>()
                        .await
                };
                match run.await {
                    Ok(b) => return Ok((b, u64::from(attempt), elapsed(started))),
                    Err(e) => last = Some(e),
                }
            }
            Err(Error::Executor(format!(
                "dataflow: the task of partition {p} failed {max_attempts} time(s); last error: {}",
                last.map_or_else(|| "none".to_string(), |e| e.to_string())
            )))
        }));
    }
    let mut out = Vec::with_capacity(parts);
    let mut retries = 0;
    let mut busy = Vec::with_capacity(parts);
    let mut first_err = None;
    for h in handles {
        match h.await {
            Ok(Ok((b, r, secs))) => {
                out.push(b);
                retries += r;
                busy.push(secs);
            }
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(Error::Executor(format!("dataflow: a task panicked: {e}")));
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok((out, retries, busy)),
    }
}

fn u64_at(batch: &RecordBatch, name: &str) -> Result<u64> {
    let c = batch
        .column_by_name(name)
        .and_then(|c| c.as_primitive_opt::<UInt64Type>())
        .ok_or_else(|| Error::Executor(format!("dataflow: no UInt64 column {name}")))?;
    Ok(if c.is_null(0) { 0 } else { c.value(0) })
}

impl LikelihoodExecutor for DataflowExecutor {
    fn name(&self) -> &str {
        "dataflow"
    }

    fn workers(&self) -> usize {
        self.config.partitions
    }

    fn threads_per_worker(&self) -> usize {
        self.config.threads
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
        if let Some(done) = start_pass(problem, theta, stop, self.config.partitions.min(n))? {
            return Ok(done);
        }
        let scoring = problem.observations().at(theta);
        let mut out = FilterOutput::new(data.len());
        out.times.planning += self.ensure_plans(problem)?;
        let plans = self.plans.last().expect("plans were just built");
        let parts = plans.parts;
        {
            let mut p = self.shared.write();
            p.problem = Some(Arc::new(problem.clone()));
            p.ssa = Some(Arc::new(problem.dynamics_of(0, theta)));
            p.scoring = scoring.as_ref().map(|s| Arc::new(s.as_ref().clone()));
            p.theta = theta.to_vec();
            p.key = Some(key);
        }
        self.shared.reset_attempts(parts);
        self.shared.rows_moved.store(0, Ordering::Relaxed);
        plans
            .pop
            .set(initial_population(&plans.pop.schema(), n, parts)?);
        let task_ctx = plans.task_ctx.clone();
        let species = net.species().len();
        let mut t_prev = problem.t0();
        let max_attempts = self.config.max_attempts;
        for k in 0..data.len() {
            let t_k = data.times()[k];
            let starts = data.starts_set(k);
            if starts {
                // A data set's first row: its particles are drawn afresh
                // from its initial law (the resampling before it is
                // overwritten), propagated by its own dynamics.
                t_prev = problem.sets()[data.set_of(k)].t0;
            }
            {
                let mut p = self.shared.write();
                p.step = k as u64;
                p.t0 = t_prev;
                p.t1 = t_k;
                p.initial = starts;
                if starts && k > 0 {
                    p.ssa = Some(Arc::new(problem.dynamics_of(data.set_of(k), theta)));
                }
            }
            // 1. Propagate and weight.
            let t = Instant::now();
            let (prop, retries, busy) = self.runtime.block_on(run_tasks(
                plans.propagate.clone(),
                task_ctx.clone(),
                self.shared.clone(),
                parts,
                max_attempts,
            ))?;
            out.task_retries += retries;
            if t_k > t_prev || k == 0 {
                let max = busy.iter().copied().fold(0.0, f64::max);
                let mean = busy.iter().sum::<f64>() / busy.len().max(1) as f64;
                out.balance.record(max, mean);
            }
            plans.prop.set(prop);
            plans.pop.take();
            out.times.propagate += elapsed(t);

            // 2. Largest log-weight and counters.
            let t = Instant::now();
            let reduced = self
                .runtime
                .block_on(collect(plans.reduce.clone(), task_ctx.clone()))?;
            let row = reduced
                .iter()
                .find(|b| b.num_rows() > 0)
                .ok_or_else(|| Error::Executor("dataflow: the reduction returned no row".into()))?;
            let m = row
                .column_by_name("max_log_weight")
                .and_then(|c| c.as_primitive_opt::<datafusion::arrow::datatypes::Float64Type>())
                .map(|c| {
                    if c.is_null(0) {
                        f64::NEG_INFINITY
                    } else {
                        c.value(0)
                    }
                })
                .ok_or_else(|| Error::Executor("dataflow: no max_log_weight".into()))?;
            out.counters.add(&SsaCounters {
                events: u64_at(row, COUNTERS[0])?,
                cap_hits: u64_at(row, COUNTERS[1])?,
                cap_events: u64_at(row, COUNTERS[2])?,
                limit_hits: u64_at(row, COUNTERS[3])?,
            });
            out.times.reduce += elapsed(t);
            if m == f64::NEG_INFINITY {
                out.loglik = f64::NEG_INFINITY;
                out.collapsed_at = Some(k);
                out.ess.push(0.0);
                plans.prop.take();
                break;
            }
            self.shared.write().max = m;

            // 3. Exact weight sums per partition.
            let t = Instant::now();
            let batches = self
                .runtime
                .block_on(collect(plans.sums.clone(), task_ctx.clone()))?;
            let per = read_weight_sums(&batches, parts)?;
            let (total, before) = account_weight_sums(&per, m, n, &mut out);
            out.times.reduce += elapsed(t);
            if stop.is_some_and(|s| {
                scoring
                    .as_ref()
                    .is_some_and(|sc| problem.cannot_accept(sc, k + 1, out.loglik, s))
            }) {
                out.stopped_after = Some(k + 1);
                plans.prop.take();
                break;
            }

            // 4. Resample: offspring per partition and the range shuffle.
            if k + 1 < data.len() {
                let t = Instant::now();
                {
                    let mut p = self.shared.write();
                    p.before = before;
                    p.total = total;
                }
                let new = self.runtime.block_on(collect_partitioned(
                    plans.resample.clone(),
                    task_ctx.clone(),
                ))?;
                plans.pop.set(new);
                plans.prop.take();
                out.times.shuffle += elapsed(t);
            } else {
                plans.prop.take();
            }
            t_prev = t_k;
        }
        out.rows_moved = self.shared.rows_moved.load(Ordering::Relaxed);
        out.bytes_sent = out.rows_moved * 8 * (2 + species) as u64;
        Ok(out)
    }
}

impl PassBatch for DataflowExecutor {
    /// The batch as a table of θ-particle indices in `P` partitions (at
    /// most one per pass), each row's pass run by `pcmc_smc2_pass` in its
    /// partition's task; a failed task is run again from its input, up to
    /// [`DataflowConfig::max_attempts`] times.
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
        if self.passes.as_ref().is_none_or(|p| p.parts != parts) {
            let shared = self.shared.clone();
            self.passes = Some(
                self.runtime
                    .block_on(build_pass_plan(parts, shared))
                    .map_err(df_err)?,
            );
        }
        let pp = self.passes.as_ref().expect("the pass plan was just built");
        let schema = smc2::index_schema();
        let table = (0..parts)
            .map(|p| {
                RecordBatch::try_new(
                    schema.clone(),
                    vec![Arc::new(smc2::index_slice(m, parts, p)) as ArrayRef],
                )
                .map(|b| vec![b])
                .map_err(|e| Error::Executor(format!("dataflow: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        pp.table.set(table);
        pp.broadcast.set(smc2::PassJob::new(problem, requests));
        self.shared.reset_attempts(parts);
        let res = self.runtime.block_on(run_tasks(
            pp.plan.clone(),
            pp.task_ctx.clone(),
            self.shared.clone(),
            parts,
            self.config.max_attempts,
        ));
        pp.table.take();
        pp.broadcast.clear();
        let (batches, retries, _) = res?;
        self.pass_retries += retries;
        let rows: Vec<RecordBatch> = batches.into_iter().flatten().collect();
        smc2::read_results(&rows, m)
    }
}

async fn collect(plan: Arc<dyn ExecutionPlan>, ctx: Arc<TaskContext>) -> Result<Vec<RecordBatch>> {
    let plan = reset_plan_states(plan).map_err(df_err)?;
    datafusion::physical_plan::collect(plan, ctx)
        .await
        .map_err(df_err)
}

async fn collect_partitioned(
    plan: Arc<dyn ExecutionPlan>,
    ctx: Arc<TaskContext>,
) -> Result<Partitions> {
    let plan = reset_plan_states(plan).map_err(df_err)?;
    datafusion::physical_plan::collect_partitioned(plan, ctx)
        .await
        .map_err(df_err)
}
