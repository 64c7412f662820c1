//! What the driver broadcasts to every task of a step: a handful of scalars
//! (θ's SSA tables, the step's times and keys, the largest log-weight, the
//! partition weight prefixes). Plans are built once and read these when they
//! run, as Spark tasks read broadcast variables.

use pcmc_core::filter::{FilterKey, FilterProblem};
use pcmc_core::ssa::Ssa;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The step's broadcast values.
#[derive(Debug, Default)]
pub struct StepParams {
    /// The filtering problem of the pass.
    pub problem: Option<Arc<FilterProblem>>,
    /// The SSA at the pass's θ.
    pub ssa: Option<Arc<Ssa>>,
    /// The pass's random streams.
    pub key: Option<FilterKey>,
    /// Observation index of the step.
    pub step: u64,
    /// Start of the propagation interval.
    pub t0: f64,
    /// End of the propagation interval (the observation time).
    pub t1: f64,
    /// Whether particles are first drawn from the initial-state prior.
    pub initial: bool,
    /// Largest log-weight of the step (for the quantised weights).
    pub max: f64,
    /// Exact weight sum of the partitions before each partition.
    pub before: Vec<u128>,
    /// Exact weight total.
    pub total: u128,
}

/// Shared, lock-protected step parameters plus the counters tasks report.
#[derive(Debug, Default)]
pub struct Shared {
    params: RwLock<StepParams>,
    /// Attempt number of each partition's current propagation task.
    pub attempts: RwLock<Vec<AtomicU32>>,
    /// Probability that a propagation task attempt fails (test-only fault
    /// injection).
    pub fail_rate: f64,
    /// Particles that changed partition in the step's shuffle.
    pub rows_moved: AtomicU64,
}

/// A handle on [`Shared`].
pub type SharedRef = Arc<Shared>;

impl Shared {
    /// New shared state with fault injection at `fail_rate`.
    pub fn new(fail_rate: f64) -> SharedRef {
        Arc::new(Shared {
            fail_rate,
            ..Default::default()
        })
    }

    /// Reads the step parameters (a poisoned lock is still readable: the
    /// values are plain data).
    pub fn read(&self) -> RwLockReadGuard<'_, StepParams> {
        self.params.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the step parameters.
    pub fn write(&self) -> RwLockWriteGuard<'_, StepParams> {
        self.params.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The current attempt of partition `p`'s propagation task.
    pub fn attempt(&self, p: usize) -> u32 {
        let a = self.attempts.read().unwrap_or_else(|e| e.into_inner());
        a.get(p).map_or(0, |x| x.load(Ordering::SeqCst))
    }

    /// Sets the attempt of partition `p`.
    pub fn set_attempt(&self, p: usize, v: u32) {
        let a = self.attempts.read().unwrap_or_else(|e| e.into_inner());
        if let Some(x) = a.get(p) {
            x.store(v, Ordering::SeqCst);
        }
    }

    /// Resizes the attempt counters for `parts` partitions.
    pub fn reset_attempts(&self, parts: usize) {
        let mut a = self.attempts.write().unwrap_or_else(|e| e.into_inner());
        *a = (0..parts).map(|_| AtomicU32::new(0)).collect();
    }
}
