//! # pcmc-rayon
//!
//! The rayon executor: particle blocks are processed in parallel on an
//! explicitly built thread pool (never rayon's global pool), so a run uses
//! exactly the threads it was given — on a Slurm node, the CPUs of the task.
//!
//! The filter itself is `pcmc_core::filter::run_filter`; this crate only
//! supplies a [`BlockRunner`] that maps blocks over the pool. Results are
//! bit-identical to the serial executor for any thread count.
//!
//! For SMC² the same pool runs whole filter passes side by side, one
//! θ-particle per task ([`PassBatch`] for [`RayonRunner`]): between two
//! resampling points the θ-particles are independent, so the parallelism
//! grows with their number rather than with one filter's particles.
#![deny(missing_docs)]

use pcmc_core::executor::BlockExecutor;
use pcmc_core::filter::{BlockRunner, FilterProblem, Workspace};
use pcmc_core::smc2::{PassBatch, PassRequest, pass_log_likelihood};
use rayon::prelude::*;

/// Errors of the rayon executor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The thread count is zero or too large.
    #[error("invalid thread count {0}: must be in 1..=4096")]
    Threads(usize),
    /// The pool could not be built.
    #[error("could not build a thread pool: {0}")]
    Pool(#[from] rayon::ThreadPoolBuildError),
}

/// A [`BlockRunner`] over a dedicated rayon pool.
#[derive(Debug)]
pub struct RayonRunner {
    pool: rayon::ThreadPool,
}

impl RayonRunner {
    /// A runner with its own pool of `threads` threads.
    ///
    /// # Errors
    /// [`Error::Threads`] for 0 or more than 4096 threads; [`Error::Pool`] if
    /// the OS refuses the threads.
    pub fn new(threads: usize) -> Result<Self, Error> {
        if threads == 0 || threads > 4096 {
            return Err(Error::Threads(threads));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("pcmc-worker-{i}"))
            .build()?;
        Ok(RayonRunner { pool })
    }
}

impl BlockRunner for RayonRunner {
    fn workers(&self) -> usize {
        self.pool.current_num_threads()
    }

    fn current_worker(&self) -> usize {
        // Inside `map`, the calling thread is one of this pool's (or the
        // caller itself when the pool has one thread).
        rayon::current_thread_index().unwrap_or(0)
    }

    fn map<I, R, F>(&self, items: &mut [I], f: F) -> Vec<R>
    where
        I: Send,
        R: Send,
        F: Fn(&mut I) -> R + Sync + Send,
    {
        if self.pool.current_num_threads() == 1 {
            return items.iter_mut().map(f).collect();
        }
        self.pool
            .install(|| items.par_iter_mut().with_max_len(1).map(f).collect())
    }
}

impl PassBatch for RayonRunner {
    /// Each pass on one thread of the pool, θ-particles taken as threads
    /// free up (passes differ in cost with θ); each result is the serial
    /// pass's, so the output does not depend on the thread count.
    fn log_likelihoods(
        &mut self,
        problem: &FilterProblem,
        requests: &[PassRequest<'_>],
    ) -> pcmc_core::Result<Vec<f64>> {
        if self.pool.current_num_threads() == 1 {
            let mut ws = Workspace::default();
            return Ok(requests
                .iter()
                .map(|r| pass_log_likelihood(problem, r, &mut ws))
                .collect());
        }
        Ok(self.pool.install(|| {
            requests
                .par_iter()
                .with_max_len(1)
                .map_init(Workspace::default, |ws, r| {
                    pass_log_likelihood(problem, r, ws)
                })
                .collect()
        }))
    }
}

/// The rayon executor.
pub type RayonExecutor = BlockExecutor<RayonRunner>;

/// A rayon executor with `threads` threads.
///
/// # Errors
/// As [`RayonRunner::new`].
pub fn rayon_executor(threads: usize) -> Result<RayonExecutor, Error> {
    Ok(BlockExecutor::new("rayon", RayonRunner::new(threads)?))
}

/// The default thread count: `SLURM_CPUS_PER_TASK` when set to a positive
/// integer (inside a Slurm job step), else the available parallelism.
pub fn default_threads() -> usize {
    std::env::var("SLURM_CPUS_PER_TASK")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_zero_threads() {
        assert!(matches!(RayonRunner::new(0), Err(Error::Threads(0))));
    }

    #[test]
    fn map_keeps_order() {
        let r = RayonRunner::new(3).unwrap();
        let mut items: Vec<u64> = (0..1000).collect();
        let out = r.map(&mut items, |x| {
            *x += 1;
            *x * 2
        });
        assert_eq!(out, (1..=1000).map(|x| x * 2).collect::<Vec<_>>());
        assert_eq!(r.workers(), 3);
    }
}
