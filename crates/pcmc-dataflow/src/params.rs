//! What the driver broadcasts to every task of a step: a handful of scalars
//! (θ's SSA tables, the step's times and keys, the largest log-weight, the
//! partition weight prefixes). Plans are built once and read these when they
//! run, as Spark tasks read broadcast variables. On a cluster the same
//! values travel inside the plans sent to remote executors ([`StepWire`]).

use pcmc_core::covariate::Dynamics;
use pcmc_core::filter::{FilterKey, FilterProblem};
use pcmc_core::observation::Scoring;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The step's broadcast values.
#[derive(Debug, Default)]
pub struct StepParams {
    /// The filtering problem of the pass.
    pub problem: Option<Arc<FilterProblem>>,
    /// The dynamics (SSA per covariate row) at the pass's θ.
    pub ssa: Option<Arc<Dynamics>>,
    /// The observations' densities and bounds at the pass's θ (`None`: a
    /// noise parameter out of range), resolved once per pass.
    pub scoring: Option<Arc<Scoring>>,
    /// The pass's θ.
    pub theta: Vec<f64>,
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

/// The step's broadcast values as they travel to a remote executor inside
/// a plan (JSON; every `f64` round-trips exactly, the `u128` sums as
/// decimal strings). Only a pass that is running has them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepWire {
    /// The filtering problem of the pass.
    pub problem: FilterProblem,
    /// The pass's θ.
    pub theta: Vec<f64>,
    /// The pass's random streams.
    pub key: FilterKey,
    /// Observation index of the step.
    pub step: u64,
    /// Start of the propagation interval.
    pub t0: f64,
    /// End of the propagation interval.
    pub t1: f64,
    /// Whether particles are first drawn from the initial-state prior.
    pub initial: bool,
    /// Largest log-weight of the step (0 before it is known).
    pub max: f64,
    /// Exact weight sum of the partitions before each partition.
    #[serde(with = "u128_strings")]
    pub before: Vec<u128>,
    /// Exact weight total.
    #[serde(with = "u128_string")]
    pub total: u128,
}

mod u128_string {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(x: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&x.to_string())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

mod u128_strings {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(x: &[u128], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(x.iter().map(|v| v.to_string()))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u128>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|v| v.parse().map_err(serde::de::Error::custom))
            .collect()
    }
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

    /// The step's values for a remote executor; `None` when no pass runs.
    pub fn wire(&self) -> Option<StepWire> {
        let p = self.read();
        Some(StepWire {
            problem: p.problem.as_deref()?.clone(),
            theta: p.theta.clone(),
            key: p.key?,
            step: p.step,
            t0: p.t0,
            t1: p.t1,
            initial: p.initial,
            max: p.max,
            before: p.before.clone(),
            total: p.total,
        })
    }

    /// Shared state holding `wire`'s values (on a remote executor; no fault
    /// injection).
    pub fn from_wire(wire: StepWire) -> SharedRef {
        let set = wire.problem.data().set_of(wire.step as usize);
        let ssa = wire.problem.dynamics_of(set, &wire.theta);
        let scoring = wire
            .problem
            .observations()
            .at(&wire.theta)
            .map(|s| Arc::new(s.into_owned()));
        let shared = Shared::new(0.0);
        *shared.write() = StepParams {
            ssa: Some(Arc::new(ssa)),
            scoring,
            problem: Some(Arc::new(wire.problem)),
            theta: wire.theta,
            key: Some(wire.key),
            step: wire.step,
            t0: wire.t0,
            t1: wire.t1,
            initial: wire.initial,
            max: wire.max,
            before: wire.before,
            total: wire.total,
        };
        shared
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

    /// The number of partitions whose attempts are counted.
    pub fn attempts_len(&self) -> usize {
        self.attempts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Resizes the attempt counters for `parts` partitions.
    pub fn reset_attempts(&self, parts: usize) {
        let mut a = self.attempts.write().unwrap_or_else(|e| e.into_inner());
        *a = (0..parts).map(|_| AtomicU32::new(0)).collect();
    }
}
