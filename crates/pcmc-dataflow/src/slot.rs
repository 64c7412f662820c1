//! A partitioned in-memory table whose contents are replaced between
//! executions: the particle population of the current step. Plans over it are
//! built once and run at every step (planning is not repeated per step).

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use std::fmt;
use std::sync::{Arc, RwLock};

/// The batches of each partition.
pub type Partitions = Vec<Vec<RecordBatch>>;

/// A slot holding a table's partitions, shared by the driver and the plans.
#[derive(Debug)]
pub struct Slot {
    name: &'static str,
    schema: SchemaRef,
    parts: usize,
    data: RwLock<Partitions>,
}

impl Slot {
    /// An empty slot of `parts` partitions.
    pub fn new(name: &'static str, schema: SchemaRef, parts: usize) -> Arc<Slot> {
        Arc::new(Slot {
            name,
            schema,
            parts,
            data: RwLock::new(vec![Vec::new(); parts]),
        })
    }

    /// Replaces the contents.
    ///
    /// # Panics
    /// If the number of partitions differs (a programming error).
    pub fn set(&self, data: Partitions) {
        assert_eq!(
            data.len(),
            self.parts,
            "partition count of slot {}",
            self.name
        );
        *self.data.write().unwrap_or_else(|e| e.into_inner()) = data;
    }

    /// Takes the contents out, leaving empty partitions.
    pub fn take(&self) -> Partitions {
        std::mem::replace(
            &mut *self.data.write().unwrap_or_else(|e| e.into_inner()),
            vec![Vec::new(); self.parts],
        )
    }

    /// The schema.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn batches(&self, p: usize) -> Vec<RecordBatch> {
        self.data.read().unwrap_or_else(|e| e.into_inner())[p].clone()
    }
}

/// The table over a [`Slot`].
#[derive(Debug)]
pub struct SlotTable {
    slot: Arc<Slot>,
}

impl SlotTable {
    /// The table over `slot`.
    pub fn new(slot: Arc<Slot>) -> Self {
        SlotTable { slot }
    }
}

#[async_trait::async_trait]
impl TableProvider for SlotTable {
    fn schema(&self) -> SchemaRef {
        self.slot.schema()
    }
    fn table_type(&self) -> TableType {
        TableType::Temporary
    }
    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(SlotExec::new(
            self.slot.clone(),
            projection.cloned(),
        )?))
    }
}

/// Scans a [`Slot`], one output partition per slot partition.
#[derive(Debug)]
pub struct SlotExec {
    slot: Arc<Slot>,
    projection: Option<Vec<usize>>,
    props: Arc<PlanProperties>,
}

impl SlotExec {
    /// A scan of `slot`, keeping the columns `projection` (all if `None`).
    ///
    /// # Errors
    /// A projection naming a column that does not exist.
    pub fn new(slot: Arc<Slot>, projection: Option<Vec<usize>>) -> DfResult<Self> {
        let schema = match &projection {
            Some(p) => Arc::new(slot.schema.project(p)?),
            None => slot.schema(),
        };
        let props = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(slot.parts),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(SlotExec {
            slot,
            projection,
            props: Arc::new(props),
        })
    }
}

impl DisplayAs for SlotExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "SlotExec: table={}, partitions={}",
            self.slot.name, self.slot.parts
        )
    }
}

impl ExecutionPlan for SlotExec {
    fn name(&self) -> &str {
        "SlotExec"
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
        Vec::new()
    }
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal("SlotExec has no children".into()))
        }
    }
    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        if partition >= self.slot.parts {
            return Err(DataFusionError::Internal(format!(
                "SlotExec: partition {partition} of {}",
                self.slot.parts
            )));
        }
        let schema = self.props.eq_properties.schema().clone();
        let batches = self.slot.batches(partition);
        let projection = self.projection.clone();
        let out: Vec<DfResult<RecordBatch>> = batches
            .into_iter()
            .map(move |b| match &projection {
                Some(p) => Ok(b.project(p)?),
                None => Ok(b),
            })
            .collect();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            futures::stream::iter(out),
        )))
    }
}
