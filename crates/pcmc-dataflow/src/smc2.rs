//! SMC²'s filter passes as dataflow: a batch of passes ([`PassJob`]: the
//! problem and one request per θ-particle) is a table of θ-particle indices
//! in `P` partitions, and each row's pass is a volatile scalar UDF
//! (`pcmc_smc2_pass`, [`Smc2Pass`]) that runs the core's filter for that
//! θ-particle on the task's thread. Between two resampling points the
//! θ-particles are independent, so a batch is one map over the table — on a
//! cluster, one job of `P` tasks. Each result is the serial pass's, bit for
//! bit, so the sampler's output does not depend on `P` or the threads.

use crate::params::SharedRef;
use crate::udf::{shared_identity, slice_of};
use datafusion::arrow::array::{ArrayRef, AsArray, Float64Array, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Schema, SchemaRef, UInt64Type};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use pcmc_core::accept::AcceptTest;
use pcmc_core::filter::{FilterProblem, Workspace, rank_slice};
use pcmc_core::rng::{Purpose, StreamKey};
use pcmc_core::smc2::{Lineage, PassRequest, pass_log_likelihood};
use pcmc_core::{Error, Result};
use rand::RngExt;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Name of the θ-particle index column of a batch's table.
pub const INDEX: &str = "theta_particle";
/// Name of the result column.
pub const LOGLIK: &str = "loglik";

/// Most passes, parameters, lineage segments and observations a decoded
/// job may name (far above any real run: they bound what a plan can make
/// an executor allocate).
pub const MAX_PASSES: usize = 1 << 24;
/// See [`MAX_PASSES`].
pub const MAX_SEGMENTS: usize = 1 << 16;

/// One pass of a batch, owned (it travels inside plans). Every `f64` is
/// kept as its bits, so −∞ and every NaN payload survive JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PassSpec {
    /// θ, as bits.
    pub theta: Vec<u64>,
    /// The keys of its draws.
    pub lineage: Lineage,
    /// Observations `y_{1:t}` to process.
    pub observations: usize,
    /// A move's acceptance test, as the bits of `[log_u, current_loglik,
    /// log_prior, current_log_prior, log_jacobian]`.
    pub stop: Option<[u64; 5]>,
}

impl PassSpec {
    /// The owned form of `r`.
    pub fn of(r: &PassRequest<'_>) -> Self {
        PassSpec {
            theta: r.theta.iter().map(|x| x.to_bits()).collect(),
            lineage: r.lineage.clone(),
            observations: r.observations,
            stop: r.stop.map(|s| {
                [
                    s.log_u.to_bits(),
                    s.current_loglik.to_bits(),
                    s.log_prior.to_bits(),
                    s.current_log_prior.to_bits(),
                    s.log_jacobian.to_bits(),
                ]
            }),
        }
    }

    /// θ.
    pub fn theta(&self) -> Vec<f64> {
        self.theta.iter().map(|b| f64::from_bits(*b)).collect()
    }

    /// The acceptance test.
    pub fn stop(&self) -> Option<AcceptTest> {
        self.stop.map(|s| AcceptTest {
            log_u: f64::from_bits(s[0]),
            current_loglik: f64::from_bits(s[1]),
            log_prior: f64::from_bits(s[2]),
            current_log_prior: f64::from_bits(s[3]),
            log_jacobian: f64::from_bits(s[4]),
        })
    }
}

/// A batch of independent filter passes: what one SMC² observation step,
/// move or exchange asks of the executor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PassJob {
    /// The filtering problem (its particle count is the current `Nx`).
    pub problem: FilterProblem,
    /// The passes, indexed by their position.
    pub passes: Vec<PassSpec>,
}

impl PassJob {
    /// The job of `requests` on `problem`.
    pub fn new(problem: &FilterProblem, requests: &[PassRequest<'_>]) -> Self {
        PassJob {
            problem: problem.clone(),
            passes: requests.iter().map(PassSpec::of).collect(),
        }
    }

    /// Checks what a decoded job could make a task index out of bounds or
    /// allocate without limit: the pass count, each θ's length, each
    /// lineage (non-empty, starting at step 0, increasing, bounded) and
    /// each observation count.
    ///
    /// # Errors
    /// What is wrong, as text.
    pub fn check(&self) -> std::result::Result<(), String> {
        let k = self.problem.data().len();
        let d = self.problem.network().parameters().len();
        if self.passes.len() > MAX_PASSES {
            return Err(format!(
                "{} passes (at most {MAX_PASSES})",
                self.passes.len()
            ));
        }
        for (i, p) in self.passes.iter().enumerate() {
            let segs = &p.lineage.0;
            let increasing = segs.windows(2).all(|w| w[0].from < w[1].from);
            if p.theta.len() != d
                || p.observations == 0
                || p.observations > k
                || segs.is_empty()
                || segs.len() > MAX_SEGMENTS
                || segs[0].from != 0
                || !increasing
            {
                return Err(format!(
                    "pass {i} is malformed ({} parameters for {d}, {} observations of {k}, {} lineage segments)",
                    p.theta.len(),
                    p.observations,
                    segs.len()
                ));
            }
        }
        Ok(())
    }

    /// Pass `i`'s log-likelihood estimate (−∞ if its acceptance test
    /// stopped it), as the serial executor computes it.
    ///
    /// # Panics
    /// If `i` is out of range (callers check indices first).
    pub fn log_likelihood(&self, i: usize, ws: &mut Workspace) -> f64 {
        let p = &self.passes[i];
        let theta = p.theta();
        let request = PassRequest {
            theta: &theta,
            lineage: &p.lineage,
            observations: p.observations,
            stop: p.stop(),
        };
        pass_log_likelihood(&self.problem, &request, ws)
    }

    /// The log-likelihoods of the passes of `indices`, checked to be in
    /// range: one result table batch (`theta_particle`, `loglik`).
    ///
    /// # Errors
    /// An index out of range.
    pub fn run_rows(&self, indices: &UInt64Array) -> DfResult<RecordBatch> {
        let out = self.log_likelihoods(indices)?;
        Ok(RecordBatch::try_new(
            result_schema(),
            vec![
                Arc::new(indices.clone()) as ArrayRef,
                Arc::new(Float64Array::from(out)),
            ],
        )?)
    }

    fn log_likelihoods(&self, indices: &UInt64Array) -> DfResult<Vec<f64>> {
        let mut ws = Workspace::default();
        indices
            .values()
            .iter()
            .map(|&i| {
                if (i as usize) < self.passes.len() {
                    Ok(self.log_likelihood(i as usize, &mut ws))
                } else {
                    Err(DataFusionError::Execution(format!(
                        "pcmc_smc2_pass: θ-particle {i} of a batch of {}",
                        self.passes.len()
                    )))
                }
            })
            .collect()
    }
}

/// The table of a batch: one `UInt64` column of θ-particle indices.
pub fn index_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        INDEX,
        DataType::UInt64,
        false,
    )]))
}

/// The result of a batch: `theta_particle` and `loglik`.
pub fn result_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(INDEX, DataType::UInt64, false),
        Field::new(LOGLIK, DataType::Float64, false),
    ]))
}

/// The θ-particle indices of partition `p` of `m` passes in `parts`
/// partitions (the balanced contiguous slice [`rank_slice`]).
pub fn index_slice(m: usize, parts: usize, p: usize) -> UInt64Array {
    let (s, e) = rank_slice(m, parts, p);
    UInt64Array::from_iter_values(s as u64..e as u64)
}

/// The log-likelihood of each of `m` passes from a batch's result rows
/// (columns `theta_particle`, `loglik`, in any order and partitioning).
///
/// # Errors
/// [`Error::Executor`] for a missing column, an index out of range, or a
/// pass that is missing or reported twice.
pub fn read_results(batches: &[RecordBatch], m: usize) -> Result<Vec<f64>> {
    let mut out: Vec<Option<f64>> = vec![None; m];
    for b in batches {
        let idx = b
            .column_by_name(INDEX)
            .and_then(|c| c.as_primitive_opt::<UInt64Type>())
            .ok_or_else(|| Error::Executor(format!("dataflow: no UInt64 column {INDEX}")))?;
        let ll = b
            .column_by_name(LOGLIK)
            .and_then(|c| c.as_primitive_opt::<Float64Type>())
            .ok_or_else(|| Error::Executor(format!("dataflow: no Float64 column {LOGLIK}")))?;
        for r in 0..b.num_rows() {
            let i = idx.value(r) as usize;
            let slot = out.get_mut(i).ok_or_else(|| {
                Error::Executor(format!("dataflow: a result for θ-particle {i} of {m}"))
            })?;
            if slot.replace(ll.value(r)).is_some() {
                return Err(Error::Executor(format!(
                    "dataflow: θ-particle {i}'s pass was reported twice"
                )));
            }
        }
    }
    out.into_iter()
        .enumerate()
        .map(|(i, x)| {
            x.ok_or_else(|| Error::Executor(format!("dataflow: no result for θ-particle {i}")))
        })
        .collect()
}

/// The batch of passes the driver broadcasts to the tasks, and its number
/// (batches run so far).
#[derive(Debug, Default)]
pub struct PassBroadcast {
    job: RwLock<Option<Arc<PassJob>>>,
    batch: AtomicU64,
}

impl PassBroadcast {
    /// Makes `job` the current batch.
    pub fn set(&self, job: PassJob) {
        *self.job.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(job));
        self.batch.fetch_add(1, Ordering::SeqCst);
    }

    /// Drops the current batch.
    pub fn clear(&self) {
        *self.job.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn current(&self) -> Option<(Arc<PassJob>, u64)> {
        let job = self.job.read().unwrap_or_else(|e| e.into_inner()).clone()?;
        Some((job, self.batch.load(Ordering::SeqCst)))
    }
}

/// `pcmc_smc2_pass(theta_particle)`: the log-likelihood estimate of the
/// current batch's pass ([`PassBroadcast`]) for each θ-particle. Volatile:
/// one pass per row, never folded or deduplicated.
#[derive(Debug)]
pub struct Smc2Pass {
    shared: SharedRef,
    passes: Arc<PassBroadcast>,
    signature: Signature,
}

impl Smc2Pass {
    /// The pass function reading its batch from `passes` (and the fault
    /// injection settings and task attempts from `shared`).
    pub fn new(shared: SharedRef, passes: Arc<PassBroadcast>) -> Self {
        Smc2Pass {
            shared,
            passes,
            signature: Signature::exact(vec![DataType::UInt64], Volatility::Volatile),
        }
    }
}

shared_identity!(Smc2Pass);

impl ScalarUDFImpl for Smc2Pass {
    fn name(&self) -> &str {
        "pcmc_smc2_pass"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Float64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let idx = arrays[0]
            .as_primitive_opt::<UInt64Type>()
            .ok_or_else(|| DataFusionError::Execution("pcmc_smc2_pass: not UInt64".into()))?;
        let Some((job, batch)) = self.passes.current() else {
            return Err(DataFusionError::Execution(
                "pcmc_smc2_pass: no batch of passes is running".into(),
            ));
        };
        // Test-only fault injection, as in `pcmc_propagate`: this attempt
        // of this partition's task fails with probability `fail_rate`.
        if self.shared.fail_rate > 0.0 && !idx.is_empty() {
            let parts = self.shared.attempts_len().max(1);
            let part = slice_of(idx.value(0), job.passes.len(), parts);
            let attempt = self.shared.attempt(part);
            let draw: f64 = StreamKey::new(
                0x6661_756c_7473,
                0,
                batch,
                0,
                idx.value(0) ^ (u64::from(attempt) << 40),
                Purpose::Test,
            )
            .rng()
            .random();
            if draw < self.shared.fail_rate {
                return Err(DataFusionError::Execution(format!(
                    "injected failure (PCMC_DATAFLOW_FAIL_RATE) in partition {part}, SMC² batch {batch}, attempt {}",
                    attempt + 1
                )));
            }
        }
        Ok(ColumnarValue::Array(Arc::new(Float64Array::from(
            job.log_likelihoods(idx)?,
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_results_orders_and_checks() {
        let b = |i: Vec<u64>, l: Vec<f64>| {
            RecordBatch::try_new(
                result_schema(),
                vec![
                    Arc::new(UInt64Array::from(i)) as ArrayRef,
                    Arc::new(Float64Array::from(l)),
                ],
            )
            .unwrap()
        };
        let got = read_results(
            &[
                b(vec![2, 0], vec![-3.0, -1.0]),
                b(vec![1], vec![f64::NEG_INFINITY]),
            ],
            3,
        )
        .unwrap();
        assert_eq!(got, vec![-1.0, f64::NEG_INFINITY, -3.0]);
        assert!(read_results(&[b(vec![0, 0], vec![1.0, 1.0])], 1).is_err());
        assert!(read_results(&[b(vec![0], vec![1.0])], 2).is_err());
        assert!(read_results(&[b(vec![5], vec![1.0])], 2).is_err());
    }

    #[test]
    fn specs_keep_every_bit() {
        let lineage = Lineage(vec![pcmc_core::smc2::Segment {
            from: 0,
            key: pcmc_core::filter::FilterKey {
                seed: 1,
                chain: 2,
                iteration: 3,
            },
        }]);
        let theta = [0.1, f64::MIN_POSITIVE, 1e300];
        let stop = AcceptTest {
            log_u: -0.3,
            current_loglik: f64::NEG_INFINITY,
            log_prior: f64::NAN,
            current_log_prior: -1.0 / 3.0,
            log_jacobian: 0.0,
        };
        let r = PassRequest {
            theta: &theta,
            lineage: &lineage,
            observations: 4,
            stop: Some(stop),
        };
        let spec: PassSpec =
            serde_json::from_str(&serde_json::to_string(&PassSpec::of(&r)).unwrap()).unwrap();
        assert_eq!(spec.theta(), theta.to_vec());
        let back = spec.stop().unwrap();
        assert_eq!(back.log_u.to_bits(), stop.log_u.to_bits());
        assert_eq!(back.current_loglik, f64::NEG_INFINITY);
        assert_eq!(back.log_prior.to_bits(), stop.log_prior.to_bits());
        assert_eq!(back.current_log_prior, stop.current_log_prior);
        assert_eq!(spec.lineage, lineage);
    }
}
