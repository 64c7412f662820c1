//! Resampling inside each partition: a partition-local operator (Spark's
//! `mapPartitions`) that reads its particles in global-index order, derives
//! their offspring counts from the global weight prefix before the
//! partition and the step's shared keyed uniform, and emits each offspring
//! with its new global index. A range repartition on that index (the
//! shuffle) then gives every partition its new contiguous slice.

use crate::params::{SharedRef, StepParams};
use crate::udf::COUNTERS;
use datafusion::arrow::array::{ArrayRef, AsArray, Float64Array, UInt64Array};
use datafusion::arrow::compute::{concat_batches, take};
use datafusion::arrow::datatypes::{Float64Type, SchemaRef, UInt64Type};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::TryStreamExt;
use pcmc_core::filter::rank_slice;
use pcmc_core::resample::{offspring_all, offspring_before, offspring_slice, quantise};
use pcmc_core::rng::Purpose;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Offspring of each partition's particles (see the module docs).
#[derive(Debug)]
pub struct OffspringExec {
    input: Arc<dyn ExecutionPlan>,
    shared: SharedRef,
    schema: SchemaRef,
    species: usize,
    n: usize,
    parts: usize,
    props: Arc<PlanProperties>,
}

impl OffspringExec {
    /// Offspring of `input`'s rows (columns `particle, log_weight, species…,
    /// counters…`, sorted by particle within each partition, partition `p`
    /// holding slice `p` of `n` particles), as rows of `schema` (`particle,
    /// log_weight, species…`).
    pub fn new(
        input: Arc<dyn ExecutionPlan>,
        shared: SharedRef,
        schema: SchemaRef,
        n: usize,
        parts: usize,
    ) -> Self {
        let props = PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(parts),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        OffspringExec {
            input,
            shared,
            species: schema.fields().len() - 2,
            schema,
            n,
            parts,
            props: Arc::new(props),
        }
    }
}

/// The offspring of partition `partition`'s particles — its slice of the
/// `n` particles in `parts` partitions, in order, with log-weights `lw` —
/// under the step's values `p` (largest log-weight, weight prefix before
/// each partition, total, resampling scheme and key): the global index of
/// the partition's first offspring and each particle's offspring count.
/// Offspring are numbered consecutively from there in particle order.
///
/// # Errors
/// No pass running, no weight prefix for the partition, or a scheme that
/// needs every weight in one place with several partitions.
pub fn slice_offspring(
    p: &StepParams,
    lw: &[f64],
    partition: usize,
    n: usize,
    parts: usize,
) -> DfResult<(u64, Vec<u64>)> {
    let key = p
        .key
        .ok_or_else(|| internal("offspring: no filter pass is running".into()))?;
    let scheme = p
        .problem
        .as_ref()
        .ok_or_else(|| internal("offspring: no filter pass is running".into()))?
        .config()
        .resampling;
    let key_k = key.stream(Purpose::Resample, p.step, 0);
    let q: Vec<u64> = lw.iter().map(|v| quantise(*v, p.max)).collect();
    let before = *p
        .before
        .get(partition)
        .ok_or_else(|| internal("offspring: no weight prefix".into()))?;
    let mut counts = vec![0u64; q.len()];
    let first = if scheme.is_distributable() {
        offspring_slice(scheme, &q, before, p.total, n as u64, key_k, &mut counts);
        offspring_before(scheme, before, p.total, n as u64, key_k)
    } else if parts == 1 {
        // One partition holds every weight: any scheme works.
        offspring_all(scheme, &q, p.total, n as u64, key_k, &mut counts);
        0
    } else {
        return Err(internal(format!(
            "offspring: {scheme:?} resampling cannot be split over {parts} partitions"
        )));
    };
    Ok((first, counts))
}

/// Checks that `batch` (particle index first) holds exactly partition
/// `partition`'s slice, in order: the prefix arithmetic depends on it.
///
/// # Errors
/// An internal error naming the partition otherwise.
pub fn check_slice(batch: &RecordBatch, partition: usize, n: usize, parts: usize) -> DfResult<()> {
    let (start, end) = rank_slice(n, parts, partition);
    let idx = batch
        .column(0)
        .as_primitive_opt::<UInt64Type>()
        .ok_or_else(|| internal("offspring: the particle column is not UInt64".into()))?;
    if idx.len() != end - start
        || idx
            .values()
            .iter()
            .enumerate()
            .any(|(r, i)| *i != (start + r) as u64)
    {
        return Err(internal(format!(
            "offspring: partition {partition} does not hold particles {start}..{end} in order"
        )));
    }
    Ok(())
}

/// The offspring rows (schema `schema`: particle, log-weight 0, species)
/// whose new global index lies in `window`, of the particles in `batch`
/// (particle, log-weight, species…, in slice order) with offspring counts
/// `counts`, numbered consecutively from `first`.
///
/// # Errors
/// Arrow errors.
pub fn offspring_rows(
    batch: &RecordBatch,
    first: u64,
    counts: &[u64],
    window: std::ops::Range<u64>,
    schema: SchemaRef,
) -> DfResult<RecordBatch> {
    let species = schema.fields().len() - 2;
    let mut pick: Vec<u64> = Vec::new();
    let mut next = first;
    for (r, c) in counts.iter().enumerate() {
        let (lo, hi) = (next.max(window.start), (next + c).min(window.end));
        if hi > lo {
            pick.extend(std::iter::repeat_n(r as u64, (hi - lo) as usize));
        }
        next += c;
    }
    let start = first.max(window.start);
    let kids = pick.len() as u64;
    let pick = UInt64Array::from(pick);
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(2 + species);
    cols.push(Arc::new(UInt64Array::from_iter_values(start..start + kids)));
    cols.push(Arc::new(Float64Array::from(vec![0.0; kids as usize])));
    for s in 0..species {
        cols.push(take(batch.column(2 + s).as_ref(), &pick, None)?);
    }
    Ok(RecordBatch::try_new(schema, cols)?)
}

impl OffspringExec {
    /// The shared step values it reads.
    pub fn shared(&self) -> &SharedRef {
        &self.shared
    }
    /// Its output schema (the particle table's).
    pub fn output_schema(&self) -> SchemaRef {
        self.schema.clone()
    }
    /// Particles and partitions it was built for.
    pub fn layout(&self) -> (usize, usize) {
        (self.n, self.parts)
    }
}

impl DisplayAs for OffspringExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "OffspringExec: particles={}, partitions={} (partition-local)",
            self.n, self.parts
        )
    }
}

fn internal(msg: String) -> DataFusionError {
    DataFusionError::Internal(msg)
}

impl ExecutionPlan for OffspringExec {
    fn name(&self) -> &str {
        "OffspringExec"
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
    fn maintains_input_order(&self) -> Vec<bool> {
        vec![false]
    }
    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return Err(internal("OffspringExec has one child".into()));
        }
        Ok(Arc::new(OffspringExec::new(
            children.remove(0),
            self.shared.clone(),
            self.schema.clone(),
            self.n,
            self.parts,
        )))
    }
    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let in_schema = self.input.schema();
        let out_schema = self.schema.clone();
        let shared = self.shared.clone();
        let (n, parts, species) = (self.n, self.parts, self.species);
        let fut = async move {
            let batches: Vec<RecordBatch> = input.try_collect().await?;
            let batch = concat_batches(&in_schema, &batches)?;
            let p = shared.read();
            let (start, end) = rank_slice(n, parts, partition);
            check_slice(&batch, partition, n, parts)?;
            let lw = batch.column(1).as_primitive::<Float64Type>();
            let (first, counts) = slice_offspring(&p, lw.values(), partition, n, parts)?;
            drop(p);
            let kids: u64 = counts.iter().sum();
            // Offspring whose new index falls outside this partition's slice
            // cross the shuffle.
            let (lo, hi) = (first.max(start as u64), (first + kids).min(end as u64));
            let staying = hi.saturating_sub(lo);
            shared
                .rows_moved
                .fetch_add(kids - staying, Ordering::Relaxed);
            debug_assert_eq!(batch.num_columns(), 2 + species + COUNTERS.len());
            offspring_rows(&batch, first, &counts, first..first + kids, out_schema)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            futures::stream::once(fut),
        )))
    }
}
