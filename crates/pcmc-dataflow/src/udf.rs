//! The functions the plans call: propagation (a volatile scalar UDF that
//! runs the core's SSA kernels over Arrow columns), the observation
//! log-density (a scalar UDF), the particle's partition (a scalar UDF) and
//! the exact quantised weight sums (an aggregate UDF).

use crate::params::SharedRef;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Decimal128Array, Float64Array, StructArray, UInt64Array,
};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, UInt64Type};
use datafusion::common::{DataFusionError, Result as DfResult, ScalarValue};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDFImpl, ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature,
    Volatility,
};
use pcmc_core::covariate::segment_index;
use pcmc_core::filter::{BLOCK, rank_slice};
use pcmc_core::resample::quantise;
use pcmc_core::rng::{Purpose, StreamKey};
use pcmc_core::ssa::{BlockScratch, Outcome, SsaCounters};
use rand::RngExt;
use std::sync::Arc;

/// Names of the per-particle counter columns the propagation emits.
pub const COUNTERS: [&str; 4] = ["_events", "_cap_hits", "_cap_events", "_limit_hits"];
/// Name of the alive flag in the propagation's struct.
pub const ALIVE: &str = "_alive";

fn exec_err(msg: impl Into<String>) -> DataFusionError {
    DataFusionError::Execution(msg.into())
}

/// `a` as a UInt64 column, or an error naming the function and argument.
fn u64_column<'a>(a: &'a ArrayRef, what: &str) -> DfResult<&'a UInt64Array> {
    a.as_primitive_opt::<UInt64Type>()
        .ok_or_else(|| exec_err(format!("{what} is not UInt64")))
}

/// The partition (particle slice) of global index `i` when `n` particles are
/// split into `parts` balanced contiguous slices ([`rank_slice`]).
pub fn slice_of(i: u64, n: usize, parts: usize) -> usize {
    // rank_slice starts are ⌊n·b/P⌋: the slice of i is the largest b with
    // ⌊n·b/P⌋ ≤ i, i.e. b = ⌊((i+1)·P − 1)/n⌋.
    let (i, n, p) = (u128::from(i), n as u128, parts as u128);
    let b = ((i + 1) * p - 1) / n;
    debug_assert!({
        let (s, e) = rank_slice(n as usize, parts, b as usize);
        (s as u128) <= i && i < e as u128
    });
    b as usize
}

macro_rules! shared_identity {
    ($t:ty) => {
        impl PartialEq for $t {
            fn eq(&self, other: &Self) -> bool {
                Arc::ptr_eq(&self.shared, &other.shared) && self.name() == other.name()
            }
        }
        impl Eq for $t {}
        impl std::hash::Hash for $t {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                std::hash::Hash::hash(self.name(), state);
                std::hash::Hash::hash(&(Arc::as_ptr(&self.shared) as usize), state);
            }
        }
    };
}
pub(crate) use shared_identity;

/// `pcmc_propagate(particle, species…)`: draws initial states (first step)
/// and advances each particle exactly to the observation time with the
/// stream keyed by its global index, so results do not depend on how the
/// particles are partitioned. Returns a struct of the new species counts,
/// an alive flag and the SSA counters. Volatile: it must run once per row
/// and never be folded or deduplicated.
#[derive(Debug)]
pub struct Propagate {
    shared: SharedRef,
    signature: Signature,
    fields: Fields,
    names: Vec<String>,
    species: usize,
    n: usize,
    parts: usize,
}

impl Propagate {
    /// For `species` named columns, `n` particles in `parts` partitions.
    pub fn new(shared: SharedRef, species: &[String], n: usize, parts: usize) -> Self {
        let mut fields: Vec<Field> = species
            .iter()
            .map(|s| Field::new(s, DataType::UInt64, false))
            .collect();
        fields.push(Field::new(ALIVE, DataType::Boolean, false));
        fields.extend(
            COUNTERS
                .iter()
                .map(|c| Field::new(*c, DataType::UInt64, false)),
        );
        Propagate {
            shared,
            signature: Signature::any(1 + species.len(), Volatility::Volatile),
            fields: fields.into(),
            names: species.to_vec(),
            species: species.len(),
            n,
            parts,
        }
    }

    /// The shared step values it reads.
    pub fn shared(&self) -> &SharedRef {
        &self.shared
    }
    /// The species names.
    pub fn species(&self) -> &[String] {
        &self.names
    }
    /// Particles and partitions it was built for.
    pub fn layout(&self) -> (usize, usize) {
        (self.n, self.parts)
    }
}

shared_identity!(Propagate);

impl ScalarUDFImpl for Propagate {
    fn name(&self) -> &str {
        "pcmc_propagate"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Struct(self.fields.clone()))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let idx = u64_column(&arrays[0], "pcmc_propagate: the particle column")?;
        let input: Vec<&UInt64Array> = arrays[1..]
            .iter()
            .map(|a| u64_column(a, "pcmc_propagate: a species column"))
            .collect::<DfResult<_>>()?;
        let rows = idx.len();
        let s_n = self.species;
        let p = self.shared.read();
        let (Some(problem), Some(ssa), Some(key)) = (&p.problem, &p.ssa, p.key) else {
            return Err(exec_err("pcmc_propagate: no filter pass is running"));
        };
        // Test-only fault injection: this attempt of this partition's task
        // fails with probability `fail_rate` (decided by a keyed draw, so a
        // run's failures are reproducible).
        if self.shared.fail_rate > 0.0 && rows > 0 {
            let part = slice_of(idx.value(0), self.n, self.parts);
            let attempt = self.shared.attempt(part);
            let draw: f64 = StreamKey::new(
                key.seed ^ 0x6661_756c_7473,
                key.chain,
                key.iteration,
                p.step,
                idx.value(0) ^ (u64::from(attempt) << 40),
                Purpose::Test,
            )
            .rng()
            .random();
            if draw < self.shared.fail_rate {
                return Err(exec_err(format!(
                    "injected failure (PCMC_DATAFLOW_FAIL_RATE) in partition {part}, step {}, attempt {}",
                    p.step,
                    attempt + 1
                )));
            }
        }
        let kernel = problem.config().kernel;
        let propagate = p.t1 > p.t0;
        let mut out: Vec<Vec<u64>> = vec![Vec::with_capacity(rows); s_n];
        let mut alive = Vec::with_capacity(rows);
        let mut counters: Vec<SsaCounters> = vec![SsaCounters::default(); rows];
        let mut block = vec![0u64; BLOCK * s_n];
        let mut outcomes = Vec::with_capacity(BLOCK);
        let mut scratch = BlockScratch::default();
        for start in (0..rows).step_by(BLOCK) {
            let len = BLOCK.min(rows - start);
            for j in 0..len {
                let i = idx.value(start + j);
                if p.initial {
                    let set = &problem.sets()[problem.data().set_of(p.step as usize)];
                    let mut rng = key.stream(Purpose::Initial, p.step, i).rng();
                    set.initial
                        .sample_into(&mut rng, &p.theta, |s, v| block[s * BLOCK + j] = v);
                } else {
                    for (s, col) in input.iter().enumerate() {
                        block[s * BLOCK + j] = col.value(start + j);
                    }
                }
            }
            outcomes.clear();
            outcomes.resize(len, Outcome::Reached);
            if propagate {
                problem.network().reset_counters(&mut block, BLOCK, len);
                // The block's counters go on its first row: sums over rows
                // are what the plans aggregate.
                counters[start] = ssa.propagate(
                    kernel,
                    &mut block,
                    BLOCK,
                    len,
                    p.t0,
                    p.t1,
                    |j, m| {
                        key.stream(
                            Purpose::Propagate,
                            p.step,
                            segment_index(idx.value(start + j), m),
                        )
                    },
                    &mut outcomes,
                    &mut scratch,
                );
            }
            for j in 0..len {
                for (s, o) in out.iter_mut().enumerate() {
                    o.push(block[s * BLOCK + j]);
                }
                alive.push(outcomes[j] == Outcome::Reached);
            }
        }
        let mut columns: Vec<ArrayRef> = out
            .into_iter()
            .map(|v| Arc::new(UInt64Array::from(v)) as ArrayRef)
            .collect();
        columns.push(Arc::new(BooleanArray::from(alive)));
        type Get = fn(&SsaCounters) -> u64;
        let getters: [Get; 4] = [
            |c| c.events,
            |c| c.cap_hits,
            |c| c.cap_events,
            |c| c.limit_hits,
        ];
        for g in getters {
            columns.push(Arc::new(UInt64Array::from_iter_values(
                counters.iter().map(g),
            )));
        }
        Ok(ColumnarValue::Array(Arc::new(StructArray::try_new(
            self.fields.clone(),
            columns,
            None,
        )?)))
    }
}

/// `pcmc_log_weight(alive, species read…)`: the observation log-density
/// of the step's observation (−∞ for a particle that did not reach it); the
/// columns are the species the observables read
/// ([`pcmc_core::observation::Observations::species_used`]).
#[derive(Debug)]
pub struct LogWeight {
    shared: SharedRef,
    signature: Signature,
    observed: usize,
}

impl LogWeight {
    /// For `observed` observed species.
    pub fn new(shared: SharedRef, observed: usize) -> Self {
        LogWeight {
            shared,
            signature: Signature::any(1 + observed, Volatility::Immutable),
            observed,
        }
    }

    /// The shared step values it reads.
    pub fn shared(&self) -> &SharedRef {
        &self.shared
    }
    /// The number of observed species.
    pub fn observed(&self) -> usize {
        self.observed
    }
}

shared_identity!(LogWeight);

impl ScalarUDFImpl for LogWeight {
    fn name(&self) -> &str {
        "pcmc_log_weight"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Float64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let alive = arrays[0]
            .as_boolean_opt()
            .ok_or_else(|| exec_err("pcmc_log_weight: alive is not Boolean"))?;
        let obs: Vec<&UInt64Array> = arrays[1..]
            .iter()
            .map(|a| u64_column(a, "pcmc_log_weight: a species column"))
            .collect::<DfResult<_>>()?;
        let p = self.shared.read();
        let Some(problem) = &p.problem else {
            return Err(exec_err("pcmc_log_weight: no filter pass is running"));
        };
        let step = p.step as usize;
        let observations = problem.observations();
        // The columns are the species the observables read, in index order.
        let used = observations.species_used();
        if used.len() != obs.len() {
            return Err(exec_err(
                "pcmc_log_weight: the species columns do not fit the problem",
            ));
        }
        let scoring = &p.scoring;
        let mut x = vec![0u64; problem.network().species().len()];
        let lw: Float64Array = (0..alive.len())
            .map(|r| {
                Some(match &scoring {
                    Some(scoring) if alive.value(r) => {
                        for (s, c) in used.iter().zip(&obs) {
                            x[*s] = c.value(r);
                        }
                        scoring.log_density(step, |s| x[s])
                    }
                    _ => f64::NEG_INFINITY,
                })
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(lw)))
    }
}

/// `pcmc_partition(particle)`: the balanced contiguous slice a global index
/// belongs to (the partition that owns it).
#[derive(Debug)]
pub struct PartitionOf {
    shared: SharedRef,
    signature: Signature,
    n: usize,
    parts: usize,
}

impl PartitionOf {
    /// For `n` particles in `parts` partitions.
    pub fn new(shared: SharedRef, n: usize, parts: usize) -> Self {
        PartitionOf {
            shared,
            signature: Signature::exact(vec![DataType::UInt64], Volatility::Immutable),
            n,
            parts,
        }
    }

    /// The shared step values.
    pub fn shared(&self) -> &SharedRef {
        &self.shared
    }
    /// Particles and partitions it was built for.
    pub fn layout(&self) -> (usize, usize) {
        (self.n, self.parts)
    }
}

shared_identity!(PartitionOf);

impl ScalarUDFImpl for PartitionOf {
    fn name(&self) -> &str {
        "pcmc_partition"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::UInt64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let idx = u64_column(&arrays[0], "pcmc_partition: the particle column")?;
        let out: UInt64Array = idx
            .values()
            .iter()
            .map(|i| slice_of(*i, self.n, self.parts) as u64)
            .collect();
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// Which exact sum of the quantised weights an aggregate computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WeightSum {
    /// `Σ q_i`.
    Total,
    /// `Σ (q_i >> 31)`, for the effective sample size.
    High,
    /// `Σ (q_i >> 31)²`, for the effective sample size.
    HighSquared,
}

/// Decimal128(38, 0) holds every sum here exactly: at most `N·2^62 < 2^94`.
const SUM_TYPE: DataType = DataType::Decimal128(38, 0);

/// `pcmc_weight_sum_*(log_weight)`: an exact, order-independent u128 sum of
/// the quantised weights `q = round(exp(lw − M)·2^62)` with `M` the step's
/// largest log-weight ([`pcmc_core::resample`]), as Decimal128(38, 0).
#[derive(Debug)]
pub struct WeightSumUdaf {
    shared: SharedRef,
    which: WeightSum,
    signature: Signature,
}

impl WeightSumUdaf {
    /// The aggregate computing `which`.
    pub fn new(shared: SharedRef, which: WeightSum) -> Self {
        WeightSumUdaf {
            shared,
            which,
            signature: Signature::exact(vec![DataType::Float64], Volatility::Immutable),
        }
    }

    /// The shared step values it reads (the largest log-weight).
    pub fn shared(&self) -> &SharedRef {
        &self.shared
    }
    /// Which sum it computes.
    pub fn which(&self) -> WeightSum {
        self.which
    }
}

shared_identity!(WeightSumUdaf);

impl AggregateUDFImpl for WeightSumUdaf {
    fn name(&self) -> &str {
        match self.which {
            WeightSum::Total => "pcmc_weight_sum",
            WeightSum::High => "pcmc_weight_sum_high",
            WeightSum::HighSquared => "pcmc_weight_sum_high_squared",
        }
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(SUM_TYPE)
    }
    fn accumulator(&self, _args: AccumulatorArgs) -> DfResult<Box<dyn Accumulator>> {
        Ok(Box::new(WeightSumAcc {
            max: self.shared.read().max,
            which: self.which,
            sum: 0,
        }))
    }
    fn state_fields(&self, args: StateFieldsArgs) -> DfResult<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[sum]", args.name),
            SUM_TYPE,
            true,
        ))])
    }
}

#[derive(Debug)]
struct WeightSumAcc {
    max: f64,
    which: WeightSum,
    sum: u128,
}

impl WeightSumAcc {
    fn value(&self) -> ScalarValue {
        ScalarValue::Decimal128(Some(self.sum as i128), 38, 0)
    }
}

impl Accumulator for WeightSumAcc {
    fn update_batch(&mut self, values: &[ArrayRef]) -> DfResult<()> {
        let lw = values[0]
            .as_primitive_opt::<datafusion::arrow::datatypes::Float64Type>()
            .ok_or_else(|| exec_err("pcmc_weight_sum: log_weight is not Float64"))?;
        if !self.max.is_finite() {
            return Err(exec_err(
                "pcmc_weight_sum: the largest log-weight is not finite",
            ));
        }
        for (r, v) in lw.values().iter().enumerate() {
            if lw.is_null(r) {
                continue;
            }
            let q = quantise(*v, self.max);
            self.sum += match self.which {
                WeightSum::Total => u128::from(q),
                WeightSum::High => u128::from(q >> 31),
                WeightSum::HighSquared => {
                    let a = u128::from(q >> 31);
                    a * a
                }
            };
        }
        Ok(())
    }
    fn evaluate(&mut self) -> DfResult<ScalarValue> {
        Ok(self.value())
    }
    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }
    fn state(&mut self) -> DfResult<Vec<ScalarValue>> {
        Ok(vec![self.value()])
    }
    fn merge_batch(&mut self, states: &[ArrayRef]) -> DfResult<()> {
        let s = states[0]
            .as_any()
            .downcast_ref::<Decimal128Array>()
            .ok_or_else(|| exec_err("pcmc_weight_sum: bad state"))?;
        for r in 0..s.len() {
            if !s.is_null(r) {
                self.sum += s.value(r) as u128;
            }
        }
        Ok(())
    }
}

/// Reads a Decimal128 sum back as u128.
pub fn decimal_u128(a: &dyn Array, row: usize) -> Option<u128> {
    let d = a.as_any().downcast_ref::<Decimal128Array>()?;
    (!d.is_null(row)).then(|| d.value(row) as u128)
}
