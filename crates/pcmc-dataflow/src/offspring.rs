//! Resampling inside each partition: a partition-local operator (Spark's
//! `mapPartitions`) that reads its particles in global-index order, derives
//! their offspring counts from the global weight prefix before the
//! partition and the step's shared keyed uniform, and emits each offspring
//! with its new global index. A range repartition on that index (the
//! shuffle) then gives every partition its new contiguous slice.

use crate::params::SharedRef;
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
            let key = p
                .key
                .ok_or_else(|| internal("OffspringExec: no filter pass is running".into()))?;
            let scheme = p
                .problem
                .as_ref()
                .ok_or_else(|| internal("OffspringExec: no filter pass is running".into()))?
                .config()
                .resampling;
            let key_k = key.stream(Purpose::Resample, p.step, 0);
            let (start, end) = rank_slice(n, parts, partition);
            let idx = batch.column(0).as_primitive::<UInt64Type>();
            // The partition must hold exactly its slice, in order: the
            // prefix arithmetic depends on it.
            if idx.len() != end - start
                || idx
                    .values()
                    .iter()
                    .enumerate()
                    .any(|(r, i)| *i != (start + r) as u64)
            {
                return Err(internal(format!(
                    "OffspringExec: partition {partition} does not hold particles {start}..{end} in order"
                )));
            }
            let lw = batch.column(1).as_primitive::<Float64Type>();
            let q: Vec<u64> = lw.values().iter().map(|v| quantise(*v, p.max)).collect();
            let before = *p
                .before
                .get(partition)
                .ok_or_else(|| internal("OffspringExec: no weight prefix".into()))?;
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
                    "OffspringExec: {scheme:?} resampling cannot be split over {parts} partitions"
                )));
            };
            drop(p);
            let kids: u64 = counts.iter().sum();
            let mut pick: Vec<u64> = Vec::with_capacity(kids as usize);
            for (r, c) in counts.iter().enumerate() {
                pick.extend(std::iter::repeat_n(r as u64, *c as usize));
            }
            let pick = UInt64Array::from(pick);
            // Offspring whose new index falls outside this partition's slice
            // cross the shuffle.
            let (lo, hi) = (first.max(start as u64), (first + kids).min(end as u64));
            let staying = hi.saturating_sub(lo);
            shared
                .rows_moved
                .fetch_add(kids - staying, Ordering::Relaxed);
            let mut cols: Vec<ArrayRef> = Vec::with_capacity(2 + species);
            cols.push(Arc::new(UInt64Array::from_iter_values(first..first + kids)));
            cols.push(Arc::new(Float64Array::from(vec![0.0; kids as usize])));
            for s in 0..species {
                cols.push(take(batch.column(2 + s).as_ref(), &pick, None)?);
            }
            debug_assert_eq!(batch.num_columns(), 2 + species + COUNTERS.len());
            Ok(RecordBatch::try_new(out_schema, cols)?)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            futures::stream::once(fut),
        )))
    }
}
