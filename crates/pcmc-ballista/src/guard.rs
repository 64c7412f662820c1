//! What an executor agrees to do: only pcmc's own plans (every node of a
//! task's plan checked before anything runs), no object store at all (a
//! built-in scan or sink that slipped through finds nothing to read or
//! write), Arrow Flight requests only for tickets of the shape Ballista
//! itself makes, and particle files only under the executor's work root,
//! in the layout the driver creates.

use crate::plans::{
    InitialExec, Layout, ProbeExec, PropScanExec, ResampleScanExec, Smc2PassExec, SpillExec,
};
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use ballista_core::JobId;
use ballista_core::serde::protobuf::{self, action::ActionType as ProtoAction};
use ballista_executor::execution_engine::{
    DefaultExecutionEngine, ExecutionEngine, QueryStageExecutor,
};
use ballista_executor::flight_service::BallistaFlightService;
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::object_store::ObjectStoreRegistry;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionConfig;
use futures::stream::BoxStream;
use object_store::ObjectStore;
use prost::Message;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use tonic::{Request, Response, Status, Streaming};

/// Most particles, partitions, species and probe hold time a decoded plan
/// may carry (far above any real run; they bound what a plan can make an
/// executor allocate or wait for).
pub const MAX_PARTICLES: usize = 1 << 31;
/// See [`MAX_PARTICLES`].
pub const MAX_PARTS: usize = 1 << 16;
/// See [`MAX_PARTICLES`].
pub const MAX_SPECIES: usize = 1 << 10;
/// See [`MAX_PARTICLES`].
pub const MAX_HOLD_MS: u64 = 60_000;

/// Node kinds of DataFusion and Ballista that pcmc's plans use and that
/// only compute (no file, no network): projections and aggregates over
/// pcmc's operators, and the writer Ballista puts at the top of a stage.
const ALLOWED: &[&str] = &[
    "ProjectionExec",
    "AggregateExec",
    "CoalescePartitionsExec",
    "CoalesceBatchesExec",
    "CooperativeExec",
    "ShuffleWriterExec",
];

/// Checks that every node of `plan` is one pcmc submits: pcmc's own
/// operators, in-memory token sources, and the compute-only kinds listed
/// in `ALLOWED`. Anything else (a file scan, a file sink, a shuffle
/// reader, …) is named in the error.
///
/// # Errors
/// A plan error naming the first node that is not pcmc's.
pub fn check_plan(plan: &Arc<dyn ExecutionPlan>) -> DfResult<()> {
    let ours = plan.downcast_ref::<InitialExec>().is_some()
        || plan.downcast_ref::<ResampleScanExec>().is_some()
        || plan.downcast_ref::<PropScanExec>().is_some()
        || plan.downcast_ref::<SpillExec>().is_some()
        || plan.downcast_ref::<ProbeExec>().is_some()
        || plan.downcast_ref::<Smc2PassExec>().is_some();
    let tokens = plan.downcast_ref::<DataSourceExec>().is_some_and(|d| {
        d.data_source()
            .downcast_ref::<MemorySourceConfig>()
            .is_some()
    });
    if !(ours || tokens || ALLOWED.contains(&plan.name())) {
        return Err(DataFusionError::Plan(format!(
            "pcmc executor: refused a task whose plan has a {} node, which pcmc never submits (only pcmc's own plans run here)",
            plan.name()
        )));
    }
    for c in plan.children() {
        check_plan(c)?;
    }
    Ok(())
}

/// Ballista's execution engine behind [`check_plan`]: a task whose plan
/// is not pcmc's fails before it runs.
#[derive(Default)]
pub struct PcmcEngine {
    inner: DefaultExecutionEngine,
}

impl ExecutionEngine for PcmcEngine {
    fn create_query_stage_exec(
        &self,
        job_id: JobId,
        stage_id: usize,
        task_id: usize,
        global_output_partition_ids: Vec<usize>,
        plan: Arc<dyn ExecutionPlan>,
        work_dir: &str,
        config: &SessionConfig,
    ) -> DfResult<Arc<dyn QueryStageExecutor>> {
        if let Err(e) = check_plan(&plan) {
            tracing::warn!("job {}: {e}", job_id.as_str());
            return Err(e);
        }
        self.inner.create_query_stage_exec(
            job_id,
            stage_id,
            task_id,
            global_output_partition_ids,
            plan,
            work_dir,
            config,
        )
    }
}

/// An object store registry that has no store for any URL: pcmc's
/// operators use the work directory through `std::fs`, so no plan of
/// pcmc's needs one, and a built-in scan or sink finds nothing to read or
/// write.
#[derive(Debug, Default)]
pub struct NoObjectStores;

impl ObjectStoreRegistry for NoObjectStores {
    fn register_store(
        &self,
        _url: &url::Url,
        _store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        None
    }

    fn get_store(&self, url: &url::Url) -> DfResult<Arc<dyn ObjectStore>> {
        Err(DataFusionError::Plan(format!(
            "pcmc cluster: no object store is available here (refused {url})"
        )))
    }
}

/// Whether `s` is a plain identifier (ASCII letters, digits, `-`, `_`; 1
/// to 64 characters): what Ballista's job ids are.
pub fn plain_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Checks a Flight ticket or action body: a Ballista `FetchPartition`
/// whose job id is a plain identifier (so it cannot leave the executor's
/// scratch directory).
fn check_fetch(bytes: &[u8]) -> Result<(), Status> {
    let action = protobuf::Action::decode(bytes)
        .map_err(|_| Status::invalid_argument("pcmc executor: not a Ballista ticket"))?;
    match action.action_type {
        Some(ProtoAction::FetchPartition(f)) if plain_id(&f.job_id) => Ok(()),
        Some(ProtoAction::FetchPartition(f)) => {
            tracing::warn!(
                "Flight: refused a ticket with job id {:?} (not a plain identifier)",
                f.job_id
            );
            Err(Status::permission_denied(
                "pcmc executor: the ticket's job id is not a plain identifier",
            ))
        }
        _ => Err(Status::invalid_argument(
            "pcmc executor: only partition fetches are served",
        )),
    }
}

/// Ballista's Flight service with only what pcmc's driver uses: partition
/// fetches (`do_get`, and the block-transport action), each ticket checked
/// for a Ballista partition fetch whose job id is a plain identifier
/// ([`plain_id`]); every other call is refused.
#[derive(Clone)]
pub struct GuardedFlight {
    inner: BallistaFlightService,
}

impl GuardedFlight {
    /// Serves the partitions under `work_dir` (the executor's scratch).
    pub fn new(work_dir: String) -> Self {
        GuardedFlight {
            inner: BallistaFlightService::new(work_dir),
        }
    }
}

type Flight = BallistaFlightService;

fn refused<T>(what: &str) -> Result<T, Status> {
    Err(Status::unimplemented(format!(
        "pcmc executor: {what} is not served"
    )))
}

#[tonic::async_trait]
impl FlightService for GuardedFlight {
    type HandshakeStream = <Flight as FlightService>::HandshakeStream;
    type ListFlightsStream = <Flight as FlightService>::ListFlightsStream;
    type DoGetStream = <Flight as FlightService>::DoGetStream;
    type DoPutStream = <Flight as FlightService>::DoPutStream;
    type DoActionStream = <Flight as FlightService>::DoActionStream;
    type ListActionsStream = <Flight as FlightService>::ListActionsStream;
    type DoExchangeStream = <Flight as FlightService>::DoExchangeStream;

    async fn handshake(
        &self,
        _r: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        refused("handshake")
    }
    async fn list_flights(
        &self,
        _r: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        refused("list_flights")
    }
    async fn get_flight_info(
        &self,
        _r: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        refused("get_flight_info")
    }
    async fn poll_flight_info(
        &self,
        _r: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        refused("poll_flight_info")
    }
    async fn get_schema(
        &self,
        _r: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        refused("get_schema")
    }
    async fn do_get(&self, r: Request<Ticket>) -> Result<Response<Self::DoGetStream>, Status> {
        check_fetch(&r.get_ref().ticket)?;
        self.inner.do_get(r).await
    }
    async fn do_put(
        &self,
        _r: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        refused("do_put")
    }
    async fn do_action(
        &self,
        r: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        if r.get_ref().r#type != "IO_BLOCK_TRANSPORT" {
            return refused("that action");
        }
        check_fetch(&r.get_ref().body)?;
        self.inner.do_action(r).await
    }
    async fn list_actions(
        &self,
        _r: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        refused("list_actions")
    }
    async fn do_exchange(
        &self,
        _r: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        refused("do_exchange")
    }
}

/// Keeps the unused stream item types of the Flight API in one place.
#[allow(dead_code)]
type _Items = (
    BoxStream<'static, HandshakeResponse>,
    BoxStream<'static, PutResult>,
    BoxStream<'static, ActionType>,
);

/// Checks a decoded [`Layout`] against the executor's work root `root`:
/// its pass directory must be `ROOT/…/pcmc-<pid>-<nanos>/pass-<n>` (a
/// driver's work directory anywhere below the root; no `..`, no other
/// shape), the run directory a real directory (not a symbolic link) inside
/// the root as the file system resolves it, and the counts within bounds.
///
/// # Errors
/// A plan error saying what is wrong, before any file is touched.
pub fn check_layout(layout: &Layout, root: &Path) -> DfResult<()> {
    let bad = |why: String| {
        tracing::warn!("refused a plan: {why}");
        Err(DataFusionError::Plan(format!("pcmc executor: {why}")))
    };
    let pass = &layout.pass_dir;
    if pass
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::RootDir))
    {
        return bad(format!(
            "the pass directory {} is not a plain absolute path",
            pass.display()
        ));
    }
    let (Some(run), Some(pass_name)) = (pass.parent(), pass.file_name()) else {
        return bad(format!(
            "the pass directory {} has no parent",
            pass.display()
        ));
    };
    let run_name = run.file_name().and_then(|s| s.to_str()).unwrap_or("");
    let pass_name = pass_name.to_str().unwrap_or("");
    let shaped = |s: &str, prefix: &str, parts: usize| {
        s.strip_prefix(prefix).is_some_and(|rest| {
            let v: Vec<&str> = rest.split('-').collect();
            v.len() == parts
                && v.iter().all(|p| {
                    !p.is_empty() && p.len() <= 40 && p.bytes().all(|b| b.is_ascii_digit())
                })
        })
    };
    if !run.starts_with(root)
        || run == root
        || !shaped(run_name, "pcmc-", 2)
        || !shaped(pass_name, "pass-", 1)
    {
        return bad(format!(
            "the pass directory {} is not of the form {}/…/pcmc-<pid>-<time>/pass-<n>",
            pass.display(),
            root.display()
        ));
    }
    match std::fs::symlink_metadata(run) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return bad(format!("{} is not a directory", run.display())),
        Err(e) => return bad(format!("{}: {e}", run.display())),
    }
    let real_root = std::fs::canonicalize(root).map_err(|e| {
        DataFusionError::Plan(format!("pcmc executor: work root {}: {e}", root.display()))
    })?;
    match std::fs::canonicalize(run) {
        Ok(r) if r.starts_with(&real_root) && r != real_root => {}
        _ => return bad(format!("{} resolves outside the work root", run.display())),
    }
    if let Ok(m) = std::fs::symlink_metadata(pass)
        && !m.is_dir()
    {
        return bad(format!("{} is not a directory", pass.display()));
    }
    if !(100..=3_600_000).contains(&layout.heartbeat_ms) {
        return bad(format!(
            "a heartbeat every {} ms is out of bounds (100 ms to 1 h)",
            layout.heartbeat_ms
        ));
    }
    if layout.n == 0 || layout.n > MAX_PARTICLES || layout.parts == 0 || layout.parts > MAX_PARTS {
        return bad(format!(
            "{} particles in {} partitions is out of bounds",
            layout.n, layout.parts
        ));
    }
    if layout.species.is_empty()
        || layout.species.len() > MAX_SPECIES
        || layout.observed.iter().any(|&o| o >= layout.species.len())
    {
        return bad("the species or observed indices are out of bounds".into());
    }
    Ok(())
}

/// The work root as the executor takes it: an absolute path (made so
/// from the current directory, not resolved through symbolic links).
///
/// # Errors
/// When the current directory cannot be read.
pub fn absolute_root(p: &Path) -> std::io::Result<PathBuf> {
    std::path::absolute(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(pass: PathBuf) -> Layout {
        Layout {
            pass_dir: pass,
            species: vec!["a".into(), "b".into()],
            observed: vec![0],
            n: 100,
            parts: 4,
            heartbeat_ms: 1000,
        }
    }

    #[test]
    fn layouts_outside_the_root_or_of_another_shape_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let run = root.join("pcmc-12-345");
        std::fs::create_dir_all(&run).unwrap();
        check_layout(&layout(run.join("pass-000001")), &root).unwrap();
        let nested = root.join("a/b/pcmc-1-2");
        std::fs::create_dir_all(&nested).unwrap();
        check_layout(&layout(nested.join("pass-7")), &root).unwrap();
        for p in [
            tmp.path().join("pcmc-12-345/pass-000001"),
            root.join("pcmc-12-345/../pcmc-12-345/pass-000001"),
            root.join("pcmc-12-345/pass-x"),
            root.join("other/pass-000001"),
            root.join("pass-000001"),
            root.join("pcmc-12-345/pass-000001/more"),
            PathBuf::from("relative/pcmc-1-2/pass-1"),
        ] {
            assert!(
                check_layout(&layout(p.clone()), &root).is_err(),
                "{}",
                p.display()
            );
        }
        // A link inside the root that points outside it.
        let outside = tmp.path().join("elsewhere");
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("pcmc-9-9")).unwrap();
        assert!(check_layout(&layout(root.join("pcmc-9-9/pass-000001")), &root).is_err());
        let mut big = layout(run.join("pass-000001"));
        big.parts = MAX_PARTS + 1;
        assert!(check_layout(&big, &root).is_err());
        let mut busy = layout(run.join("pass-000001"));
        busy.heartbeat_ms = 0;
        assert!(check_layout(&busy, &root).is_err());
    }

    #[test]
    fn plain_ids() {
        assert!(plain_id("aB3-_x"));
        assert!(!plain_id("/etc"));
        assert!(!plain_id("../x"));
        assert!(!plain_id(""));
    }
}
