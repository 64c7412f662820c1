//! Long polling for pull-staged executors: Ballista's scheduler service with
//! an idle executor's `PollWork` held until tasks are ready.
//!
//! pcmc's executors pull their tasks (they open no task port that a
//! stranger could reach), and Ballista 55's executor sleeps 50 ms after
//! every poll that brings no task. A job submitted during that sleep waits
//! for it: about 25 ms per task on average, which doubled a pcmc step's
//! round trip. Here the scheduler answers a `PollWork` that would bring no
//! task only after asking its own scheduling state again every
//! [`RECHECK`] (in process, no network) for up to `hold`, so a task
//! reaches an idle executor within a few milliseconds of its job's
//! submission. The executor's task statuses are handed over on the first
//! ask only; the repeated asks carry none. Only an executor with every slot
//! free is held (one with a task running must report its status when the
//! task ends).
//!
//! A job whose driver goes away is cancelled: the driver follows its job
//! on the stream `execute_query_push` returns, and when that stream is
//! dropped before the job ended (the driver gave up, exited or lost its
//! connection) the job is cancelled on the scheduler, so no orphan job
//! keeps executors busy. Ballista's stream names the job only when it ends,
//! so the job is found by its name (pcmc's driver gives every job its own)
//! among the scheduler's active jobs. Every other call goes straight
//! through.

use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpc;
use ballista_core::serde::protobuf::{
    CancelJobParams, CancelJobResult, CleanJobDataParams, CleanJobDataResult,
    CreateUpdateSessionParams, CreateUpdateSessionResult, ExecuteQueryParams, ExecuteQueryResult,
    ExecutorStoppedParams, ExecutorStoppedResult, GetJobMetricsParams, GetJobMetricsResult,
    GetJobStatusParams, GetJobStatusResult, HeartBeatParams, HeartBeatResult, PollWorkParams,
    PollWorkResult, RegisterExecutorParams, RegisterExecutorResult, RemoveSessionParams,
    RemoveSessionResult, UpdateTaskStatusParams, UpdateTaskStatusResult,
};
use futures::Stream;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tonic::{Request, Response, Status};

/// How often a held poll asks the scheduling state again.
pub const RECHECK: Duration = Duration::from_millis(2);

/// Finds the id of the active (queued or running) job with a given name.
pub type JobFinder = Arc<
    dyn Fn(String) -> Pin<Box<dyn std::future::Future<Output = Option<String>> + Send>>
        + Send
        + Sync,
>;

/// A scheduler service whose idle polls wait for work (see the module).
pub struct LongPoll<S> {
    inner: Arc<S>,
    hold: Duration,
    find: JobFinder,
}

impl<S> LongPoll<S> {
    /// Wraps `inner`, holding idle polls for at most `hold` (keep it well
    /// below the executor timeout: a held poll is the executor's heartbeat);
    /// `find` looks up an abandoned job by its name.
    pub fn new(inner: S, hold: Duration, find: JobFinder) -> Self {
        LongPoll {
            inner: Arc::new(inner),
            hold,
            find,
        }
    }
}

type Reply<T> = Result<Response<T>, Status>;

/// A job's status stream that cancels the job when it is dropped before
/// the job ended (see the module).
pub struct CancelOnDrop<S: SchedulerGrpc> {
    inner: Pin<Box<S::ExecuteQueryPushStream>>,
    scheduler: Arc<S>,
    find: JobFinder,
    name: Option<String>,
    job: Option<String>,
    ended: bool,
}

impl<S: SchedulerGrpc> Stream for CancelOnDrop<S> {
    type Item = Result<GetJobStatusResult, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        use ballista_core::serde::protobuf::job_status::Status as Js;
        let next = self.inner.as_mut().poll_next(cx);
        match &next {
            Poll::Ready(Some(Ok(r))) => {
                if let Some(st) = &r.status {
                    if !st.job_id.is_empty() {
                        self.job = Some(st.job_id.clone());
                    }
                    if matches!(st.status, Some(Js::Successful(_) | Js::Failed(_))) {
                        self.ended = true;
                    }
                }
            }
            Poll::Ready(None | Some(Err(_))) => self.ended = true,
            Poll::Pending => {}
        }
        next
    }
}

impl<S: SchedulerGrpc> Drop for CancelOnDrop<S> {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let (job, name) = (self.job.take(), self.name.take());
        if job.is_none() && name.is_none() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (scheduler, find) = (self.scheduler.clone(), self.find.clone());
        rt.spawn(async move {
            let job_id = match (job, name) {
                (Some(id), _) => id,
                (None, Some(name)) => match find(name).await {
                    Some(id) => id,
                    None => return, // it ended meanwhile
                },
                (None, None) => return,
            };
            tracing::warn!("job {job_id}: its driver went away before it ended; cancelling it");
            if let Err(e) = scheduler
                .cancel_job(Request::new(CancelJobParams {
                    job_id: job_id.clone(),
                }))
                .await
            {
                tracing::warn!("job {job_id}: cancelling failed: {e}");
            }
        });
    }
}

/// The executor's task slots, from its registration in the poll.
fn total_vcores(p: &PollWorkParams) -> Option<u32> {
    use ballista_core::serde::protobuf::executor_resource::Resource;
    p.metadata
        .as_ref()?
        .specification
        .as_ref()?
        .resources
        .iter()
        .find_map(|r| r.resource.map(|Resource::Vcores(n)| n))
}

#[tonic::async_trait]
impl<S: SchedulerGrpc> SchedulerGrpc for LongPoll<S> {
    async fn poll_work(&self, request: Request<PollWorkParams>) -> Reply<PollWorkResult> {
        let deadline = Instant::now() + self.hold;
        let metadata = request.metadata().clone();
        let again = PollWorkParams {
            task_status: Vec::new(),
            ..request.get_ref().clone()
        };
        // Hold only an executor with nothing running: a running task's
        // status would otherwise wait for the held poll to return.
        let idle = again.num_free_vcores > 0
            && again.num_free_vcores >= total_vcores(&again).unwrap_or(u32::MAX);
        let mut reply = self.inner.poll_work(request).await?;
        while idle
            && reply.get_ref().tasks.is_empty()
            && reply.get_ref().jobs_to_clean.is_empty()
            && Instant::now() + RECHECK < deadline
        {
            tokio::time::sleep(RECHECK).await;
            let mut r = Request::new(again.clone());
            *r.metadata_mut() = metadata.clone();
            reply = self.inner.poll_work(r).await?;
        }
        Ok(reply)
    }

    async fn register_executor(
        &self,
        r: Request<RegisterExecutorParams>,
    ) -> Reply<RegisterExecutorResult> {
        self.inner.register_executor(r).await
    }

    async fn heart_beat_from_executor(
        &self,
        r: Request<HeartBeatParams>,
    ) -> Reply<HeartBeatResult> {
        self.inner.heart_beat_from_executor(r).await
    }

    async fn update_task_status(
        &self,
        r: Request<UpdateTaskStatusParams>,
    ) -> Reply<UpdateTaskStatusResult> {
        self.inner.update_task_status(r).await
    }

    async fn create_update_session(
        &self,
        r: Request<CreateUpdateSessionParams>,
    ) -> Reply<CreateUpdateSessionResult> {
        self.inner.create_update_session(r).await
    }

    async fn remove_session(&self, r: Request<RemoveSessionParams>) -> Reply<RemoveSessionResult> {
        self.inner.remove_session(r).await
    }

    type ExecuteQueryPushStream = CancelOnDrop<S>;

    async fn execute_query_push(
        &self,
        r: Request<ExecuteQueryParams>,
    ) -> Reply<Self::ExecuteQueryPushStream> {
        let name = r
            .get_ref()
            .settings
            .iter()
            .find(|s| s.key == ballista_core::config::BALLISTA_JOB_NAME)
            .and_then(|s| s.value.clone())
            .filter(|n| !n.is_empty());
        let reply = self.inner.execute_query_push(r).await?;
        let (metadata, stream, extensions) = reply.into_parts();
        Ok(Response::from_parts(
            metadata,
            CancelOnDrop {
                inner: Box::pin(stream),
                scheduler: self.inner.clone(),
                find: self.find.clone(),
                name,
                job: None,
                ended: false,
            },
            extensions,
        ))
    }

    async fn execute_query(&self, r: Request<ExecuteQueryParams>) -> Reply<ExecuteQueryResult> {
        self.inner.execute_query(r).await
    }

    async fn get_job_status(&self, r: Request<GetJobStatusParams>) -> Reply<GetJobStatusResult> {
        self.inner.get_job_status(r).await
    }

    async fn get_job_metrics(&self, r: Request<GetJobMetricsParams>) -> Reply<GetJobMetricsResult> {
        self.inner.get_job_metrics(r).await
    }

    async fn executor_stopped(
        &self,
        r: Request<ExecutorStoppedParams>,
    ) -> Reply<ExecutorStoppedResult> {
        self.inner.executor_stopped(r).await
    }

    async fn cancel_job(&self, r: Request<CancelJobParams>) -> Reply<CancelJobResult> {
        self.inner.cancel_job(r).await
    }

    async fn clean_job_data(&self, r: Request<CleanJobDataParams>) -> Reply<CleanJobDataResult> {
        self.inner.clean_job_data(r).await
    }
}
