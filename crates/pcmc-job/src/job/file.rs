//! The job file as written: one struct per section, with the readers that
//! name what was found and what is allowed.

use pcmc_core::prior::Prior;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The job file as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JobFile {
    /// Name of the job (default: the file stem).
    pub name: Option<String>,
    /// Run seed (default 1).
    pub seed: Option<u64>,
    /// `pmmh` (default) or `smc2`.
    pub method: Option<String>,
    /// SMC² settings (`method = "smc2"`).
    pub smc2: Option<Smc2Section>,
    /// The model.
    pub model: ModelSection,
    /// Where the data are.
    pub data: Option<DataSpec>,
    /// How observations arise: one law for every column, each a species
    /// (the first versions' form).
    pub observation: Option<ObservationSection>,
    /// What each data column observes and through which noise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observables: Option<BTreeMap<String, ObservableSection>>,
    /// The initial-state prior (optional when an SBML model gives every
    /// species' initial amount).
    #[serde(default)]
    pub initial: InitialSection,
    /// Per-parameter settings: prior, start, true value, proposal scale.
    pub parameters: BTreeMap<String, ParameterSection>,
    /// Particle filter settings.
    #[serde(default)]
    pub filter: FilterSection,
    /// PMMH settings.
    #[serde(default)]
    pub mcmc: McmcSection,
    /// Executor defaults.
    #[serde(default)]
    pub executor: ExecutorSection,
    /// Output settings.
    #[serde(default)]
    pub output: OutputSection,
    /// Settings for `pcmc simulate`.
    pub simulate: Option<SimulateSection>,
}

/// `[smc2]`: SMC² settings.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Smc2Section {
    /// θ-particles `Nθ` (default 1000).
    pub theta_particles: Option<usize>,
    /// Particles per θ-particle's filter at the start, `Nx` (default 100).
    pub particles: Option<usize>,
    /// Resample-move when the θ-ESS falls below this fraction of `Nθ`
    /// (default 0.5).
    pub ess_threshold: Option<f64>,
    /// PMMH moves per rejuvenation (default 3).
    pub moves: Option<u32>,
    /// `independent` (default) or `random-walk`.
    pub proposal: Option<String>,
    /// Keep moving until this fraction of the θ-particles has accepted a
    /// move (default: off, exactly `moves` moves).
    pub renew: Option<f64>,
    /// The most moves per rejuvenation under `renew` (default 30).
    pub renew_max_moves: Option<u32>,
    /// What raises `Nx`: `noise` (default: the measured variance of the
    /// log-likelihood estimates) or `acceptance` (the moves' acceptance).
    pub exchange_rule: Option<String>,
    /// The noise rule's target variance of `log p̂(y | θ)` (default 1).
    pub noise_variance: Option<f64>,
    /// The acceptance rule doubles `Nx` when a rejuvenation's acceptance
    /// falls below this (default 0.2).
    pub exchange_below: Option<f64>,
    /// The exchange step on (default) or off.
    pub exchange: Option<bool>,
    /// The exchange step never takes `Nx` above this (default 5000).
    pub max_particles: Option<usize>,
    /// A resample-move after the last observation, so that the final cloud
    /// is equally weighted (default off).
    pub final_move: Option<bool>,
    /// Independent replicates of the run, combined: the evidence is their
    /// mean, its error their spread, the posterior their pooled clouds
    /// (default 1).
    pub replicates: Option<u32>,
}

/// The most replicates an SMC² run takes.
pub const MAX_REPLICATES: u32 = 1000;

/// Default `smc2.theta_particles`.
pub const DEFAULT_THETA_PARTICLES: usize = 1000;
/// Default `smc2.particles`.
pub const DEFAULT_SMC2_PARTICLES: usize = 100;

/// `[model]`: a preset or a declared network.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// `lotka-volterra` or `immigration-death`.
    pub preset: Option<String>,
    /// Number of predators for `lotka-volterra` (1–8).
    pub predators: Option<usize>,
    /// Species of a declared network.
    pub species: Option<Vec<String>>,
    /// Reactions of a declared network.
    pub reactions: Option<Vec<ReactionSection>>,
    /// An SBML file (Level 2 or 3 core, mass-action subset), relative to
    /// the job file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sbml: Option<String>,
    /// The SHA-256 of the SBML file's bytes, set when it is read (never
    /// written by a user): the job's fingerprint and SMC²'s stream tag
    /// change when the file does.
    #[serde(skip_deserializing, skip_serializing_if = "Option::is_none")]
    pub sbml_sha256: Option<String>,
}

/// `[[model.reactions]]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ReactionSection {
    /// Name of the reaction.
    pub name: Option<String>,
    /// Reactants: species → coefficient.
    #[serde(default)]
    pub reactants: BTreeMap<String, u32>,
    /// Products: species → coefficient.
    #[serde(default)]
    pub products: BTreeMap<String, u32>,
    /// Name of the rate parameter.
    pub rate: String,
}

/// `[data]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// A name for messages and plots (`[[data]]`; default `set N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// CSV path, relative to the job file.
    pub path: PathBuf,
    /// This data set's own initial state (`[[data]]`; default: the job's
    /// `[initial]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial: Option<InitialSection>,
    /// Covariate CSV (`time,<name…>`, piecewise constant), relative to the
    /// job file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covariates: Option<PathBuf>,
}

/// `[data]` (one data set) or `[[data]]` (several that share θ).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum DataSpec {
    /// `[data]`.
    One(DataSection),
    /// `[[data]]`, one table per data set.
    Many(Vec<DataSection>),
}

impl DataSpec {
    /// The data sets, in order.
    pub fn sets(&self) -> Vec<&DataSection> {
        match self {
            DataSpec::One(d) => vec![d],
            DataSpec::Many(v) => v.iter().collect(),
        }
    }
}

impl<'de> Deserialize<'de> for DataSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let v = serde_json::Value::deserialize(d)?;
        match v {
            serde_json::Value::Array(items) => {
                if items.is_empty() {
                    return Err(D::Error::custom("[[data]] has no data set"));
                }
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, x)| {
                        serde_json::from_value::<DataSection>(x)
                            .map_err(|e| D::Error::custom(format!("data set {}: {e}", i + 1)))
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map(DataSpec::Many)
            }
            serde_json::Value::Object(_) => serde_json::from_value::<DataSection>(v)
                .map(DataSpec::One)
                .map_err(D::Error::custom),
            other => Err(D::Error::custom(format!(
                "{} is not allowed: expected a table [data] or tables [[data]]",
                found(&other)
            ))),
        }
    }
}

/// A number for all observed species, or one per species.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum PerSpecies<T> {
    /// The same value for every species.
    All(T),
    /// A value per species name.
    Each(BTreeMap<String, T>),
}

/// `[observation]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ObservationSection {
    /// `gaussian` or `poisson`.
    pub model: String,
    /// Gaussian noise sd: a number, or a table species → sd.
    pub sd: Option<PerSpecies<f64>>,
}

/// `[initial]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InitialSection {
    /// Poisson mean of a species' initial count.
    #[serde(default)]
    pub means: BTreeMap<String, f64>,
    /// A species' initial count: a number (`S = 762`), a parameter
    /// (`I = "I0"`, inferred), or a total (`S = "N - I0"`).
    // Left out when empty: the job's fingerprint and SMC²'s stream tag
    // (hashes of these sections) stay those of jobs written before it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counts: BTreeMap<String, CountSpec>,
    /// Time of the initial state (default: the first observation time).
    pub time: Option<f64>,
}

/// One species' initial count in `[initial] counts`: a number, or an
/// expression in parameters (`"I0"`, `"N - I0"`, `"762 - I0"`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum CountSpec {
    /// A fixed count.
    Count(u64),
    /// A parameter, or a whole number and parameters added or subtracted.
    Expr(String),
}

/// `[parameters.NAME]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ParameterSection {
    /// The prior, e.g. `{ dist = "log-uniform", lower = 0.01, upper = 100 }`.
    pub prior: Prior,
    /// Starting value (default: the prior's centre).
    pub init: Option<f64>,
    /// The true value, for `pcmc simulate` and plots.
    #[serde(rename = "true")]
    pub true_value: Option<f64>,
    /// Proposal sd on the log scale (default: `mcmc.proposal_sd`).
    pub proposal_sd: Option<f64>,
}

/// `[filter]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSection {
    /// Number of particles, or `"auto"`: adapted during burn-in
    /// (`[filter.auto]`).
    #[serde(default = "default_particles")]
    pub particles: ParticlesSetting,
    /// Bounds and target of `particles = "auto"`.
    pub auto: Option<AutoSection>,
    /// `systematic`, `stratified`, `multinomial` or `residual`.
    #[serde(default = "default_resampling")]
    pub resampling: String,
    /// `scalar`, `batch` or `simd` (identical results; simd is the AVX2
    /// kernel where the CPU has it).
    #[serde(default = "default_kernel")]
    pub kernel: String,
    /// Population cap: a number for every species or a table per species.
    pub cap: Option<PerSpecies<u64>>,
    /// Event limit per particle per observation interval.
    pub max_events: Option<u64>,
}

/// `filter.particles`: a count or `"auto"`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ParticlesSetting {
    /// A fixed count.
    Count(usize),
    /// A word: only `"auto"` is valid.
    Word(String),
}

/// `[filter.auto]`: the particle count adapted during burn-in.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AutoSection {
    /// Fewest particles (default 50).
    pub min: Option<usize>,
    /// Most particles (default 5000).
    pub max: Option<usize>,
    /// Particles at the starting point (default 100, within the bounds).
    pub start: Option<usize>,
    /// Target sd of the log-likelihood estimate (default 1.2).
    pub target_sd: Option<f64>,
}

/// Default `filter.auto.min`.
pub const DEFAULT_AUTO_MIN: usize = 50;
/// Default `filter.auto.max`.
pub const DEFAULT_AUTO_MAX: usize = 5000;
/// Default `filter.auto.start` (clamped to the bounds).
pub const DEFAULT_AUTO_START: usize = 100;

pub(super) fn default_particles() -> ParticlesSetting {
    ParticlesSetting::Count(1000)
}
fn default_resampling() -> String {
    "systematic".into()
}
fn default_kernel() -> String {
    "simd".into()
}

impl Default for FilterSection {
    fn default() -> Self {
        FilterSection {
            particles: default_particles(),
            auto: None,
            resampling: default_resampling(),
            kernel: default_kernel(),
            cap: None,
            max_events: None,
        }
    }
}

/// `[mcmc]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct McmcSection {
    /// Iterations after burn-in.
    #[serde(default = "default_iterations")]
    pub iterations: u64,
    /// Burn-in iterations.
    #[serde(default = "default_burn_in")]
    pub burn_in: u64,
    /// Keep every `thin`-th iteration.
    #[serde(default = "one")]
    pub thin: u64,
    /// Number of chains.
    #[serde(default = "one_usize")]
    pub chains: usize,
    /// Adapt the proposal covariance during burn-in.
    #[serde(default = "yes")]
    pub adapt: bool,
    /// First adaptation (default: a fifth of the burn-in, at least 2·dim + 2).
    pub adapt_start: Option<u64>,
    /// Re-estimate every this many iterations.
    #[serde(default = "default_adapt_every")]
    pub adapt_every: u64,
    /// Default proposal sd on the log scale.
    #[serde(default = "default_proposal_sd")]
    pub proposal_sd: f64,
    /// Full proposal covariance over the free parameters (in model order).
    pub proposal_cov: Option<Vec<Vec<f64>>>,
    /// Where chains start: `dispersed` (default: chain 0 at the parameters'
    /// `init`, the others at `init · exp(N(0, init_sd²))`), `prior` (draws
    /// from the priors) or `fixed` (every chain at `init`).
    pub init: Option<String>,
    /// Log-scale spread of dispersed starting points (default 0.5).
    pub init_sd: Option<f64>,
    /// Stop a proposal's filter pass as soon as it can no longer be accepted
    /// (default true; the chain is the same either way).
    #[serde(default = "yes")]
    pub early_rejection: bool,
    /// Burn-in iterations between two checks of each chain (default 50).
    pub check_every: Option<u64>,
    /// Extra filter passes per check (default 16).
    pub check_passes: Option<u32>,
    /// Detect chains stuck on an overestimated likelihood during burn-in
    /// and give them a fresh estimate (default true).
    #[serde(default = "yes")]
    pub stuck_check: bool,
    /// Move a chain whose log posterior lies far below the best chain's to
    /// that chain's state during burn-in (default true).
    #[serde(default = "yes")]
    pub relocate: bool,
}

fn default_iterations() -> u64 {
    1000
}
fn default_burn_in() -> u64 {
    200
}
fn one() -> u64 {
    1
}
fn one_usize() -> usize {
    1
}
fn yes() -> bool {
    true
}
fn default_adapt_every() -> u64 {
    50
}
fn default_proposal_sd() -> f64 {
    0.05
}

impl Default for McmcSection {
    fn default() -> Self {
        McmcSection {
            iterations: default_iterations(),
            burn_in: default_burn_in(),
            thin: 1,
            chains: 1,
            adapt: true,
            adapt_start: None,
            adapt_every: default_adapt_every(),
            proposal_sd: default_proposal_sd(),
            proposal_cov: None,
            init: None,
            init_sd: None,
            early_rejection: true,
            check_every: None,
            check_passes: None,
            stuck_check: true,
            relocate: true,
        }
    }
}

/// `[executor]`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutorSection {
    /// `rayon` (default), `mpi` or `dataflow`.
    pub kind: Option<String>,
    /// Worker threads (default: `SLURM_CPUS_PER_TASK` or all cores).
    pub threads: Option<usize>,
    /// Partitions of the dataflow executor.
    pub partitions: Option<usize>,
    /// A Ballista scheduler `df://HOST:PORT`: run the dataflow executor's
    /// steps as jobs on that cluster.
    pub scheduler: Option<String>,
    /// The directory for particles between steps on a Ballista cluster
    /// (default: `work` in the run directory); every executor must see it at
    /// the same path.
    pub work_dir: Option<PathBuf>,
}

/// `[output]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    /// Run directory (default `runs/<name>`), relative to the working directory.
    pub dir: Option<PathBuf>,
    /// Write `chain.parquet`.
    #[serde(default = "yes")]
    pub parquet: bool,
    /// Draw SVG plots.
    #[serde(default = "yes")]
    pub plots: bool,
    /// Posterior draws simulated for the predictive plot.
    #[serde(default = "default_predictive")]
    pub predictive_draws: usize,
    /// Write a checkpoint every this many iterations (default 100; also at
    /// least every 10 minutes, and on SIGTERM, SIGINT or SIGUSR1).
    pub checkpoint_every: Option<u64>,
    /// A seconds-long smoke test, not meant to converge: its convergence
    /// warnings (R̂, ESS) are printed as one line (default false; the
    /// shipped `*-quick` jobs set it).
    #[serde(default)]
    pub smoke_test: bool,
}

fn default_predictive() -> usize {
    200
}

impl Default for OutputSection {
    fn default() -> Self {
        OutputSection {
            dir: None,
            parquet: true,
            plots: true,
            predictive_draws: default_predictive(),
            checkpoint_every: None,
            smoke_test: false,
        }
    }
}

/// Observation times for `pcmc simulate`: a list, or a regular grid.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum TimesSpec {
    /// Explicit times.
    List(Vec<f64>),
    /// `start, start + step, …, ≤ end`.
    Grid {
        /// First time.
        start: f64,
        /// Last time (inclusive, up to rounding).
        end: f64,
        /// Spacing.
        step: f64,
    },
}

// The job file's values of more than one shape are read through a JSON
// value, so that a wrong value is reported as what was found and what is
// allowed (serde's untagged enums say only "did not match any variant").

/// Shows a found value as the job file would spell it.
pub(super) fn found(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Object(_) => "a table".into(),
        serde_json::Value::Array(_) => "a list".into(),
        serde_json::Value::String(s) => format!("the string {s:?}"),
        other => other.to_string(),
    }
}

/// A kind of number a per-species job field takes, named in messages.
pub trait FieldNumber: Sized + Copy {
    /// What is allowed, in words.
    const WHAT: &'static str;
    /// The value, if it is of this kind.
    fn from_json(v: &serde_json::Value) -> Option<Self>;
}

impl FieldNumber for f64 {
    const WHAT: &'static str = "a number";
    fn from_json(v: &serde_json::Value) -> Option<f64> {
        v.as_f64()
    }
}

impl FieldNumber for u64 {
    const WHAT: &'static str = "a whole number ≥ 0";
    fn from_json(v: &serde_json::Value) -> Option<u64> {
        v.as_u64()
    }
}

impl<'de, T: FieldNumber> Deserialize<'de> for PerSpecies<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let v = serde_json::Value::deserialize(d)?;
        let allowed = format!("{}, or a table species = {}", T::WHAT, T::WHAT);
        match &v {
            serde_json::Value::Object(m) => {
                let mut out = BTreeMap::new();
                for (k, x) in m {
                    let t = T::from_json(x).ok_or_else(|| {
                        D::Error::custom(format!(
                            "{} for species {k:?} is not allowed: expected {allowed}",
                            found(x)
                        ))
                    })?;
                    out.insert(k.clone(), t);
                }
                Ok(PerSpecies::Each(out))
            }
            other => T::from_json(other).map(PerSpecies::All).ok_or_else(|| {
                D::Error::custom(format!(
                    "{} is not allowed: expected {allowed}",
                    found(other)
                ))
            }),
        }
    }
}

impl<'de> Deserialize<'de> for ParticlesSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let v = serde_json::Value::deserialize(d)?;
        match &v {
            serde_json::Value::String(s) => Ok(ParticlesSetting::Word(s.clone())),
            other => other
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(ParticlesSetting::Count)
                .ok_or_else(|| {
                    D::Error::custom(format!(
                        "{} is not allowed: expected a whole number of particles from 1 to 2^32, or \"auto\"",
                        found(other)
                    ))
                }),
        }
    }
}

impl<'de> Deserialize<'de> for TimesSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Grid {
            start: f64,
            end: f64,
            step: f64,
        }
        let v = serde_json::Value::deserialize(d)?;
        let allowed =
            "expected a list of times [0, 1.5, …] or a grid { start = 0, end = 30, step = 2 }";
        match &v {
            serde_json::Value::Array(a) => a
                .iter()
                .map(serde_json::Value::as_f64)
                .collect::<Option<Vec<f64>>>()
                .map(TimesSpec::List)
                .ok_or_else(|| {
                    D::Error::custom(format!(
                        "a list with a value that is not a number: {allowed}"
                    ))
                }),
            serde_json::Value::Object(_) => serde_json::from_value::<Grid>(v.clone())
                .map(|g| TimesSpec::Grid {
                    start: g.start,
                    end: g.end,
                    step: g.step,
                })
                .map_err(|e| D::Error::custom(format!("{e}: {allowed}"))),
            other => Err(D::Error::custom(format!(
                "{} is not allowed: {allowed}",
                found(other)
            ))),
        }
    }
}

/// `[simulate]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SimulateSection {
    /// Observation times.
    pub times: TimesSpec,
    /// Observed species (default: all).
    pub observed: Option<Vec<String>>,
    /// Seed for the dataset (default: the job seed).
    pub seed: Option<u64>,
    /// Times whose values are written as missing (`NA`), to make data
    /// with gaps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<Vec<f64>>,
}

/// `[observables.NAME]`: the data column `NAME`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ObservableSection {
    /// The value observed: a species, or a sum of species with whole
    /// coefficients (`"I + R"`, `"2*dimer + monomer"`). Default: the column's
    /// name, which must then be a species.
    pub of: Option<String>,
    /// The *incidence* of these reactions (by name): how often they fired
    /// since the previous observation time (since the initial time for the
    /// first row). Instead of `of`.
    pub incidence: Option<Names>,
    /// `gaussian`, `poisson`, `negative-binomial`, `binomial` or `log-normal`.
    pub noise: String,
    /// Standard deviation (gaussian; of `ln y` for log-normal).
    pub sd: Option<ParamSpec>,
    /// Reporting rate (poisson and negative-binomial, default 1) or
    /// ascertainment probability (binomial, required).
    pub rho: Option<ParamSpec>,
    /// Negative-binomial size `k` (variance `μ + μ²/k`).
    pub k: Option<ParamSpec>,
    /// Negative-binomial over-dispersion `φ = 1/k` (variance `μ + φμ²`).
    pub phi: Option<ParamSpec>,
}

/// One name or a list of names.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Names(pub Vec<String>);

impl<'de> Deserialize<'de> for Names {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let v = serde_json::Value::deserialize(d)?;
        let bad = || {
            D::Error::custom(format!(
                "{} is not allowed: expected a reaction name or a list of them",
                found(&v)
            ))
        };
        match &v {
            serde_json::Value::String(s) => Ok(Names(vec![s.clone()])),
            serde_json::Value::Array(a) => a
                .iter()
                .map(|x| x.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .map(Names)
                .ok_or_else(bad),
            _ => Err(bad()),
        }
    }
}

/// A noise parameter as written: a number, or the name of a parameter
/// (with its own `[parameters.NAME]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ParamSpec {
    /// A fixed value.
    Value(f64),
    /// An inferred parameter.
    Name(String),
}

impl<'de> Deserialize<'de> for ParamSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let v = serde_json::Value::deserialize(d)?;
        match &v {
            serde_json::Value::String(s) => Ok(ParamSpec::Name(s.clone())),
            other => other.as_f64().map(ParamSpec::Value).ok_or_else(|| {
                D::Error::custom(format!(
                    "{} is not allowed: expected a number or the name of a parameter",
                    found(other)
                ))
            }),
        }
    }
}
