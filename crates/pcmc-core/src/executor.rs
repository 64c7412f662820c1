//! The executor seam: one trait, implemented by the serial executor here and
//! by the rayon, MPI and dataflow executors in their own crates.

use crate::accept::AcceptTest;
use crate::error::Result;
use crate::filter::{
    BlockRunner, FilterKey, FilterOutput, FilterProblem, SerialRunner, SingleProcess, Workspace,
    run_filter_on,
};

/// Which chains a worker runs when the workers are split into groups, one
/// group per chain (or per set of chains): chain `i` of a run (counting from
/// its first chain) runs on group `i % count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainGroup {
    /// This worker's group, in `0..count`.
    pub index: usize,
    /// Number of groups.
    pub count: usize,
    /// Whether this worker is its group's first (it reports the group's
    /// stage times).
    pub leader: bool,
}

impl ChainGroup {
    /// One group holding every worker.
    pub const SINGLE: ChainGroup = ChainGroup {
        index: 0,
        count: 1,
        leader: true,
    };

    /// Whether chain `i` (counting from the run's first chain) runs here.
    pub fn runs(&self, i: usize) -> bool {
        i % self.count == self.index
    }
}

/// Computes particle-filter log-likelihood estimates.
///
/// Contract: for the same problem, θ and key, every implementation returns
/// the same log-likelihood and ESS bit for bit, and the same SSA counters, as
/// [`SerialExecutor`], whatever its number of workers.
pub trait LikelihoodExecutor {
    /// A short name (`serial`, `rayon`, `mpi`, `dataflow`).
    fn name(&self) -> &str;
    /// Number of workers (threads, ranks or partitions).
    fn workers(&self) -> usize;
    /// One filter pass at `theta` with the random streams of `key`, stopped
    /// early (see [`FilterProblem::cannot_accept`]) once the proposal can no
    /// longer pass `stop`, if given: the output then has
    /// [`FilterOutput::stopped_after`] set.
    ///
    /// # Errors
    /// Only for executor failures (a lost worker, a failed task); numerical
    /// events give a −∞ estimate instead.
    fn filter(
        &mut self,
        problem: &FilterProblem,
        theta: &[f64],
        key: FilterKey,
        stop: Option<&AcceptTest>,
    ) -> Result<FilterOutput>;

    /// One full filter pass (never stopped early).
    ///
    /// # Errors
    /// As [`LikelihoodExecutor::filter`].
    fn log_likelihood(
        &mut self,
        problem: &FilterProblem,
        theta: &[f64],
        key: FilterKey,
    ) -> Result<FilterOutput> {
        self.filter(problem, theta, key, None)
    }

    /// Threads used by each worker (1 unless a distributed executor runs a
    /// thread pool per rank).
    fn threads_per_worker(&self) -> usize {
        1
    }

    /// Gives the executor the run's stop flag (set by SIGTERM, SIGINT,
    /// SIGUSR1). An executor whose estimate takes many round trips (one
    /// cluster job per step) checks it between them and returns
    /// [`crate::Error::Interrupted`], so that a signal's warning time is
    /// enough to checkpoint; the others ignore it (the run checks the flag
    /// after every iteration).
    fn stop_on(&mut self, flag: std::sync::Arc<std::sync::atomic::AtomicBool>) {
        let _ = flag;
    }

    /// Whether this process writes outputs (rank 0 of a distributed run;
    /// always true in a single process).
    fn is_root(&self) -> bool {
        true
    }

    /// Whether `flag` is set on any worker (every worker gets the same
    /// answer). Used so that all ranks stop at the same iteration on a signal.
    ///
    /// # Errors
    /// Communication failures.
    fn any_worker(&mut self, flag: bool) -> Result<bool> {
        Ok(flag)
    }

    /// Checks that every worker holds the same `values` bit for bit (θ and the
    /// log-likelihood after an iteration).
    ///
    /// # Errors
    /// [`crate::Error::Executor`] if they differ.
    fn check_consensus(&mut self, values: &[f64]) -> Result<()> {
        let _ = values;
        Ok(())
    }

    /// The maximum of `x` over workers.
    ///
    /// # Errors
    /// Communication failures.
    fn max_over_workers(&mut self, x: f64) -> Result<f64> {
        Ok(x)
    }

    /// The sum of `x` over workers.
    ///
    /// # Errors
    /// Communication failures.
    fn sum_over_workers(&mut self, x: f64) -> Result<f64> {
        Ok(x)
    }

    /// This worker's chain group ([`ChainGroup::SINGLE`] unless the executor
    /// splits its workers between chains).
    fn chain_group(&self) -> ChainGroup {
        ChainGroup::SINGLE
    }

    /// Every worker's `bytes`, in worker order, on every worker: how groups
    /// share their chains' states after each iteration.
    ///
    /// # Errors
    /// Communication failures.
    fn all_gather_bytes(&mut self, bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
        Ok(vec![bytes.to_vec()])
    }
}

/// An executor that runs [`run_filter_on`] over a [`BlockRunner`], keeping its
/// buffers between passes.
#[derive(Debug)]
pub struct BlockExecutor<R> {
    name: &'static str,
    runner: R,
    workspace: Workspace,
}

impl<R: BlockRunner> BlockExecutor<R> {
    /// An executor named `name` over `runner`.
    pub fn new(name: &'static str, runner: R) -> Self {
        BlockExecutor {
            name,
            runner,
            workspace: Workspace::default(),
        }
    }

    /// The runner.
    pub fn runner(&self) -> &R {
        &self.runner
    }
}

impl<R: BlockRunner> LikelihoodExecutor for BlockExecutor<R> {
    fn name(&self) -> &str {
        self.name
    }
    fn workers(&self) -> usize {
        self.runner.workers()
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
        run_filter_on(
            &self.runner,
            &SingleProcess,
            problem,
            theta,
            key,
            stop,
            &mut self.workspace,
        )
    }
}

/// The reference executor: everything on the calling thread.
pub type SerialExecutor = BlockExecutor<SerialRunner>;

/// A new [`SerialExecutor`].
pub fn serial() -> SerialExecutor {
    BlockExecutor::new("serial", SerialRunner)
}
