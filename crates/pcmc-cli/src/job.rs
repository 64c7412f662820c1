//! Job files: TOML descriptions of a model, its data, priors and run settings.
//! The README documents every field.

use crate::error::input;
use anyhow::Result;
use pcmc_core::filter::{
    DEFAULT_CAP, DEFAULT_MAX_EVENTS, FilterConfig, FilterProblem, KernelChoice,
};
use pcmc_core::model::{Network, ReactionSpec, Term};
use pcmc_core::observation::{Data, InitialPrior, ObservationModel};
use pcmc_core::pmmh::{AdaptConfig, DEFAULT_INIT_SD, PmmhConfig, ProposalCovariance, StartPoints};
use pcmc_core::prior::Prior;
use pcmc_core::resample::Resampling;
use pcmc_core::tuning::{
    AutoParticles, ChainChecks, DEFAULT_CHECK_EVERY, DEFAULT_CHECK_PASSES, DEFAULT_TARGET_SD,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
    pub data: Option<DataSection>,
    /// How observations arise.
    pub observation: ObservationSection,
    /// The initial-state prior.
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
    /// CSV path, relative to the job file.
    pub path: PathBuf,
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
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InitialSection {
    /// Poisson mean of each species' initial count.
    pub means: BTreeMap<String, f64>,
    /// Time of the initial state (default: the first observation time).
    pub time: Option<f64>,
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

fn default_particles() -> ParticlesSetting {
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
fn found(v: &serde_json::Value) -> String {
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
}

/// A validated job, with every default filled in.
#[derive(Debug, Clone)]
pub struct Job {
    /// Path of the job file.
    pub path: PathBuf,
    /// The file's text.
    pub text: String,
    /// The parsed file.
    pub file: JobFile,
    /// Job name.
    pub name: String,
    /// The model.
    pub network: Network,
    /// Priors in parameter order.
    pub priors: Vec<Prior>,
    /// True θ, if every parameter has one.
    pub truth: Option<Vec<f64>>,
    /// Initial-state prior.
    pub initial: InitialPrior,
    /// Filter settings (particles may be overridden).
    pub filter: FilterConfig,
    /// PMMH settings.
    pub mcmc: PmmhConfig,
}

fn per_species<T: Copy>(
    path: &Path,
    field: &str,
    spec: &PerSpecies<T>,
    names: &[String],
    default: Option<T>,
) -> Result<Vec<T>> {
    match spec {
        PerSpecies::All(v) => Ok(vec![*v; names.len()]),
        PerSpecies::Each(map) => {
            for k in map.keys() {
                if !names.contains(k) {
                    return Err(input(
                        path,
                        format!("{field}: {k:?} is not one of {}", names.join(", ")),
                    ));
                }
            }
            names
                .iter()
                .map(|n| {
                    map.get(n)
                        .copied()
                        .or(default)
                        .ok_or_else(|| input(path, format!("{field}: no value for species {n:?}")))
                })
                .collect()
        }
    }
}

fn core_err(path: &Path, e: pcmc_core::Error) -> anyhow::Error {
    input(path, e.to_string())
}

impl Job {
    /// Reads and validates a job file.
    ///
    /// # Errors
    /// An input error (exit status 2) naming the file, the field (with line
    /// and column for TOML syntax and schema errors) and the reason.
    pub fn load(path: &Path) -> Result<Job> {
        let meta = std::fs::metadata(path)
            .map_err(|e| input(path, format!("cannot read the job file: {e}")))?;
        if meta.is_dir() {
            return Err(input(path, "is a directory, not a job file"));
        }
        let bytes = std::fs::read(path)
            .map_err(|e| input(path, format!("cannot read the job file: {e}")))?;
        let text =
            String::from_utf8(bytes).map_err(|_| input(path, "the job file is not UTF-8 text"))?;
        Job::parse(path, text)
    }

    /// Validates job-file text read from `path`.
    ///
    /// # Errors
    /// As [`Job::load`].
    pub fn parse(path: &Path, text: String) -> Result<Job> {
        let file = parse_file(path, &text)?;
        let name = file.name.clone().unwrap_or_else(|| {
            path.file_stem()
                .map_or("job".into(), |s| s.to_string_lossy().into_owned())
        });
        if name.is_empty() || name.len() > 100 || name.contains(['/', '\\', '\0']) {
            return Err(input(
                path,
                "name: must be 1–100 characters without '/' or '\\'",
            ));
        }
        let network = build_network(path, &file.model)?;
        let species = network.species().to_vec();
        let params = network.parameters().to_vec();

        // Parameters.
        for k in file.parameters.keys() {
            if !params.contains(k) {
                return Err(input(
                    path,
                    format!(
                        "parameters.{k}: the model has no parameter {k:?} (parameters: {})",
                        params.join(", ")
                    ),
                ));
            }
        }
        let mut priors = Vec::new();
        let mut init = Vec::new();
        let mut truth = Vec::new();
        let mut sds = Vec::new();
        for p in &params {
            let sec = file.parameters.get(p).ok_or_else(|| {
                input(
                    path,
                    format!("parameters.{p}: missing (every parameter needs a prior)"),
                )
            })?;
            sec.prior.validate(p).map_err(|e| core_err(path, e))?;
            let x0 = sec.init.unwrap_or_else(|| sec.prior.centre());
            if sec.prior.log_density(x0) == f64::NEG_INFINITY {
                return Err(input(
                    path,
                    format!("parameters.{p}.init: {x0} is outside the support of the prior"),
                ));
            }
            if let Some(t) = sec.true_value
                && !(t.is_finite() && t > 0.0)
            {
                return Err(input(
                    path,
                    format!("parameters.{p}.true: {t} is not a finite positive rate"),
                ));
            }
            if let Some(sd) = sec.proposal_sd
                && !(sd.is_finite() && sd > 0.0)
            {
                return Err(input(
                    path,
                    format!("parameters.{p}.proposal_sd: {sd} is not a finite positive number"),
                ));
            }
            priors.push(sec.prior);
            init.push(x0);
            truth.push(sec.true_value);
            if !sec.prior.is_fixed() {
                sds.push(sec.proposal_sd.unwrap_or(file.mcmc.proposal_sd));
            }
        }
        let truth = truth.iter().copied().collect::<Option<Vec<f64>>>();

        // Initial state.
        for k in file.initial.means.keys() {
            if !species.contains(k) {
                return Err(input(
                    path,
                    format!(
                        "initial.means: {k:?} is not a species ({})",
                        species.join(", ")
                    ),
                ));
            }
        }
        let means =
            species
                .iter()
                .map(|s| {
                    file.initial.means.get(s).copied().ok_or_else(|| {
                        input(path, format!("initial.means: no mean for species {s:?}"))
                    })
                })
                .collect::<Result<Vec<f64>>>()?;
        let initial = InitialPrior::new(&network, means).map_err(|e| core_err(path, e))?;
        if let Some(t) = file.initial.time
            && !t.is_finite()
        {
            return Err(input(path, "initial.time: must be finite"));
        }

        // Filter.
        let f = &file.filter;
        let auto = match (&f.particles, &f.auto) {
            (ParticlesSetting::Count(n), None) => {
                check_particles(path, "filter.particles", *n)?;
                None
            }
            (ParticlesSetting::Count(_), Some(_)) => {
                return Err(input(
                    path,
                    "filter.auto: only applies to filter.particles = \"auto\"",
                ));
            }
            (ParticlesSetting::Word(w), a) if w == "auto" => {
                let a = a.clone().unwrap_or_default();
                let min = a.min.unwrap_or(DEFAULT_AUTO_MIN);
                let max = a.max.unwrap_or(DEFAULT_AUTO_MAX.max(min));
                check_particles(path, "filter.auto.min", min)?;
                check_particles(path, "filter.auto.max", max)?;
                if min > max {
                    return Err(input(
                        path,
                        format!("filter.auto: min = {min} is above max = {max}"),
                    ));
                }
                Some(AutoParticles {
                    min,
                    max,
                    start: a.start.unwrap_or(DEFAULT_AUTO_START.clamp(min, max)),
                    target_sd: a.target_sd.unwrap_or(DEFAULT_TARGET_SD),
                })
            }
            (ParticlesSetting::Word(w), _) => {
                return Err(input(
                    path,
                    format!("filter.particles: {w:?} is neither a count nor \"auto\""),
                ));
            }
        };
        let start_particles = match (&f.particles, &auto) {
            (ParticlesSetting::Count(n), _) => *n,
            (_, Some(a)) => a.start,
            (_, None) => unreachable!("a word other than auto was refused above"),
        };
        let mut filter = FilterConfig::new(start_particles, species.len());
        filter.resampling = Resampling::parse(&f.resampling).map_err(|e| core_err(path, e))?;
        filter.kernel = KernelChoice::parse(&f.kernel).ok_or_else(|| {
            input(
                path,
                format!(
                    "filter.kernel: {:?} is not one of scalar, batch, simd",
                    f.kernel
                ),
            )
        })?;
        if let Some(cap) = &f.cap {
            filter.caps = per_species(path, "filter.cap", cap, &species, Some(DEFAULT_CAP))?;
        }
        filter.max_events = f.max_events.unwrap_or(DEFAULT_MAX_EVENTS);
        if filter.caps.contains(&0) {
            return Err(input(path, "filter.cap: a cap must be at least 1"));
        }
        if filter.max_events == 0 {
            return Err(input(path, "filter.max_events: must be at least 1"));
        }

        // Observation sd shape is checked against the data when they are loaded.
        match file.observation.model.as_str() {
            "gaussian" => {
                if file.observation.sd.is_none() {
                    return Err(input(
                        path,
                        "observation.sd: required for gaussian observations",
                    ));
                }
            }
            "poisson" => {
                if file.observation.sd.is_some() {
                    return Err(input(
                        path,
                        "observation.sd: not used by poisson observations; remove it",
                    ));
                }
            }
            m => {
                return Err(input(
                    path,
                    format!("observation.model: {m:?} is not one of gaussian, poisson"),
                ));
            }
        }

        // MCMC.
        let m = &file.mcmc;
        let d = sds.len() as u64;
        if m.chains == 0 || m.chains > 1024 {
            return Err(input(
                path,
                format!("mcmc.chains: {} is not in 1..=1024", m.chains),
            ));
        }
        if m.thin == 0 {
            return Err(input(path, "mcmc.thin: must be at least 1"));
        }
        if m.iterations == 0 {
            return Err(input(path, "mcmc.iterations: must be at least 1"));
        }
        if m.iterations.saturating_add(m.burn_in) > 1_000_000_000 {
            return Err(input(
                path,
                "mcmc: burn_in + iterations must be at most 10^9",
            ));
        }
        if m.adapt_every == 0 {
            return Err(input(path, "mcmc.adapt_every: must be at least 1"));
        }
        if !(m.proposal_sd.is_finite() && m.proposal_sd > 0.0) {
            return Err(input(
                path,
                format!(
                    "mcmc.proposal_sd: {} is not a finite positive number",
                    m.proposal_sd
                ),
            ));
        }
        let proposal = match &m.proposal_cov {
            Some(rows) => ProposalCovariance::Full(rows.clone()),
            None => ProposalCovariance::Diagonal(sds),
        };
        let start = match m.init.as_deref().unwrap_or("dispersed") {
            "dispersed" => {
                let sd = m.init_sd.unwrap_or(DEFAULT_INIT_SD);
                if !(sd.is_finite() && sd >= 0.0) {
                    return Err(input(
                        path,
                        format!("mcmc.init_sd: {sd} is not a finite non-negative number"),
                    ));
                }
                StartPoints::Dispersed { sd }
            }
            "prior" | "fixed" if m.init_sd.is_some() => {
                return Err(input(
                    path,
                    "mcmc.init_sd: only applies to mcmc.init = \"dispersed\"",
                ));
            }
            "prior" => StartPoints::Prior,
            "fixed" => StartPoints::Fixed,
            other => {
                return Err(input(
                    path,
                    format!("mcmc.init: {other:?} is not one of dispersed, prior, fixed"),
                ));
            }
        };
        let adapt = m.adapt.then(|| AdaptConfig {
            start: m.adapt_start.unwrap_or((m.burn_in / 5).max(2 * d + 2)),
            every: m.adapt_every,
        });
        let mcmc = PmmhConfig {
            seed: file.seed.unwrap_or(1),
            chains: m.chains,
            burn_in: m.burn_in,
            iterations: m.iterations,
            thin: m.thin,
            init,
            start,
            proposal,
            adapt,
            early_rejection: m.early_rejection,
            checks: ChainChecks {
                every: m.check_every.unwrap_or(DEFAULT_CHECK_EVERY),
                passes: m.check_passes.unwrap_or(DEFAULT_CHECK_PASSES),
                stuck: m.stuck_check,
                relocate: m.relocate,
                auto,
            },
        };
        mcmc.checks.validate().map_err(|e| core_err(path, e))?;
        Ok(Job {
            path: path.to_path_buf(),
            text,
            name,
            network,
            priors,
            truth,
            initial,
            filter,
            mcmc,
            file,
        })
    }

    /// The directory that relative paths in the job file are resolved against.
    pub fn base_dir(&self) -> PathBuf {
        self.path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    /// The data path given in the job file, resolved.
    pub fn data_path(&self) -> Option<PathBuf> {
        self.file
            .data
            .as_ref()
            .map(|d| self.base_dir().join(&d.path))
    }

    /// The observation model for data observing `names`.
    ///
    /// # Errors
    /// An input error if a per-species sd is missing or unknown.
    pub fn observation_model(&self, names: &[String]) -> Result<ObservationModel> {
        match self.file.observation.model.as_str() {
            "poisson" => Ok(ObservationModel::Poisson),
            _ => {
                let sd = self.file.observation.sd.as_ref().expect("validated");
                if let PerSpecies::Each(map) = sd {
                    for k in map.keys() {
                        if self.network.species_index(k).is_none() {
                            return Err(input(
                                &self.path,
                                format!("observation.sd: {k:?} is not a species"),
                            ));
                        }
                    }
                }
                Ok(ObservationModel::Gaussian {
                    sd: per_species(&self.path, "observation.sd", sd, names, None)?,
                })
            }
        }
    }

    /// The filtering problem for `data`.
    ///
    /// # Errors
    /// An input error (naming `data_path` for data errors) if the data do not
    /// fit the job.
    pub fn problem(&self, data: Data, data_path: &Path) -> Result<FilterProblem> {
        let obs = self.observation_model(data.names())?;
        let t0 = self.file.initial.time.unwrap_or(data.times()[0]);
        if t0 > data.times()[0] {
            return Err(input(
                &self.path,
                format!(
                    "initial.time: {t0} is after the first observation time {} in {}",
                    data.times()[0],
                    data_path.display()
                ),
            ));
        }
        if let Some((i, c, v)) = obs.invalid_value(&data) {
            return Err(input(
                data_path,
                format!(
                    "{}column {:?}: {v} is not a count (observation.model = \"poisson\" needs non-negative integers)",
                    crate::data::line_of_row(data_path, i)
                        .map_or(String::new(), |l| format!("line {l}, ")),
                    data.names()[c]
                ),
            ));
        }
        // Population caps: the job's, else derived from the data.
        let mut filter = self.filter.clone();
        filter.caps = pcmc_core::filter::data_caps(&self.network, &data);
        match &self.file.filter.cap {
            Some(PerSpecies::All(v)) => filter.caps.fill(*v),
            Some(PerSpecies::Each(map)) => {
                for (name, v) in map {
                    if let Some(s) = self.network.species_index(name) {
                        filter.caps[s] = *v;
                    }
                }
            }
            None => {}
        }
        FilterProblem::new(
            self.network.clone(),
            data,
            obs,
            self.initial.clone(),
            t0,
            filter,
        )
        .map_err(|e| match e {
            pcmc_core::Error::Data(_) => input(data_path, e.to_string()),
            other => core_err(&self.path, other),
        })
    }

    /// Simulation times from `[simulate]`.
    ///
    /// # Errors
    /// An input error if the section is missing or the times are invalid.
    pub fn simulate_times(&self) -> Result<Vec<f64>> {
        let sim = self.file.simulate.as_ref().ok_or_else(|| {
            input(
                &self.path,
                "simulate: this job has no [simulate] section (times and observed species)",
            )
        })?;
        let times = match &sim.times {
            TimesSpec::List(v) => v.clone(),
            TimesSpec::Grid { start, end, step } => {
                if !(start.is_finite()
                    && end.is_finite()
                    && step.is_finite()
                    && *step > 0.0
                    && end >= start)
                {
                    return Err(input(
                        &self.path,
                        "simulate.times: need finite start ≤ end and step > 0",
                    ));
                }
                let n = ((end - start) / step + 1e-9).floor() as u64;
                if n > 1_000_000 {
                    return Err(input(&self.path, "simulate.times: more than 10^6 times"));
                }
                (0..=n).map(|i| start + step * i as f64).collect()
            }
        };
        if times.is_empty() {
            return Err(input(&self.path, "simulate.times: no times"));
        }
        for w in times.windows(2) {
            if !(w[1] > w[0]) {
                return Err(input(
                    &self.path,
                    "simulate.times: times must be strictly increasing",
                ));
            }
        }
        if times.iter().any(|t| !t.is_finite()) {
            return Err(input(&self.path, "simulate.times: times must be finite"));
        }
        Ok(times)
    }

    /// The job file as far as it determines the results: executor, worker
    /// counts, output settings, the name, the data path (the values count,
    /// not where they are), the number of chains and iterations, the kernel
    /// and early rejection are left out (they do not change a chain's
    /// rows).
    fn result_view(&self) -> JobFile {
        let mut f = self.file.clone();
        f.executor = ExecutorSection::default();
        f.output = OutputSection::default();
        f.name = None;
        f.data = None;
        f.mcmc.iterations = 0;
        f.mcmc.chains = 1;
        f.mcmc.early_rejection = true;
        f.filter.kernel = String::new();
        f
    }

    /// The settings that determine the results, field by field
    /// (`mcmc.burn_in = 100`, `parameters.birth.prior.…`), with the
    /// command line's particle count and seed: what a refused checkpoint
    /// names when the job changed.
    pub fn result_fields(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let v = serde_json::to_value(self.result_view()).unwrap_or_default();
        flatten("", &v, &mut out);
        out.insert(
            "particles (effective)".into(),
            self.filter.particles.to_string(),
        );
        out.insert("seed (effective)".into(), self.mcmc.seed.to_string());
        out
    }

    /// The job fields that `method` does not use, as written (`mcmc.burn_in`,
    /// `smc2`): SMC² uses only `mcmc.early_rejection` of `[mcmc]` and sizes
    /// `Nx` itself; PMMH uses no `[smc2]`.
    pub fn ignored_fields(&self, method: Method) -> Vec<String> {
        let flat = |v: serde_json::Value, prefix: &str| {
            let mut m = BTreeMap::new();
            flatten(prefix, &v, &mut m);
            m
        };
        match method {
            Method::Pmmh => self
                .file
                .smc2
                .as_ref()
                .map(|_| vec!["[smc2]".to_string()])
                .unwrap_or_default(),
            Method::Smc2 => {
                let used = McmcSection {
                    early_rejection: self.file.mcmc.early_rejection,
                    ..McmcSection::default()
                };
                let was = flat(serde_json::to_value(&used).unwrap_or_default(), "mcmc");
                let now = flat(
                    serde_json::to_value(&self.file.mcmc).unwrap_or_default(),
                    "mcmc",
                );
                let mut out: Vec<String> = now
                    .iter()
                    .filter(|(k, v)| was.get(*k) != Some(*v))
                    .map(|(k, _)| k.clone())
                    .collect();
                if self.file.filter.particles != default_particles() {
                    out.push("filter.particles".into());
                }
                if self.file.filter.auto.is_some() {
                    out.push("filter.auto".into());
                }
                out
            }
        }
    }

    /// A fingerprint of everything that determines the chain: the model,
    /// priors, settings that change results, and the data.
    ///
    /// Executor, worker counts, output settings and the number of iterations
    /// are left out: they do not change the chain's rows.
    pub fn fingerprint(&self, data: &Data) -> String {
        let mut h = Sha256::new();
        h.update(serde_json::to_vec(&self.result_view()).unwrap_or_default());
        h.update(
            format!(
                "particles={}|seed={}|checks={:?}",
                self.filter.particles, self.mcmc.seed, self.mcmc.checks
            )
            .as_bytes(),
        );
        for i in 0..data.len() {
            h.update(data.times()[i].to_le_bytes());
            for v in data.row(i) {
                h.update(v.to_le_bytes());
            }
        }
        h.update(data.names().join(",").as_bytes());
        let d = h.finalize();
        d.iter().take(16).map(|b| format!("{b:02x}")).collect()
    }
}

/// The inference method of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Particle marginal Metropolis–Hastings.
    Pmmh,
    /// SMC².
    Smc2,
}

impl Method {
    /// Parses `pmmh` or `smc2`.
    pub fn parse(s: &str) -> Option<Method> {
        match s {
            "pmmh" => Some(Method::Pmmh),
            "smc2" => Some(Method::Smc2),
            _ => None,
        }
    }
}

impl Job {
    /// The job's method (`method`, default PMMH).
    ///
    /// # Errors
    /// An input error for an unknown method.
    pub fn method(&self) -> Result<Method> {
        match &self.file.method {
            None => Ok(Method::Pmmh),
            Some(m) => Method::parse(m).ok_or_else(|| {
                input(
                    &self.path,
                    format!("method: {m:?} is not one of pmmh, smc2"),
                )
            }),
        }
    }

    /// `smc2.replicates` (default 1).
    ///
    /// # Errors
    /// An input error for a count outside 1..=[`MAX_REPLICATES`].
    pub fn smc2_replicates(&self) -> Result<u32> {
        let r = self
            .file
            .smc2
            .as_ref()
            .and_then(|s| s.replicates)
            .unwrap_or(1);
        if (1..=MAX_REPLICATES).contains(&r) {
            Ok(r)
        } else {
            Err(input(
                &self.path,
                format!("smc2.replicates: {r} is not in 1..={MAX_REPLICATES}"),
            ))
        }
    }

    /// The model's tag for SMC²'s random streams: the first 8 bytes of the
    /// SHA-256 of its `[model]`, `[observation]`, `[initial]` and
    /// `[parameters]` (never 0). Two models run with the same seed draw
    /// independent random numbers; the same model with the same seed draws
    /// the same ones.
    pub fn model_tag(&self) -> u64 {
        let f = &self.file;
        let v = serde_json::json!([f.model, f.observation, f.initial, f.parameters]);
        let d = Sha256::digest(serde_json::to_vec(&v).unwrap_or_default());
        let mut b = [0u8; 8];
        b.copy_from_slice(&d[..8]);
        u64::from_le_bytes(b).max(1)
    }

    /// The SMC² settings and the starting `Nx`, from `[smc2]` with defaults
    /// (seed from the job; the random streams tagged by the model,
    /// [`Job::model_tag`]).
    ///
    /// # Errors
    /// An input error naming the `smc2.*` field and the reason.
    pub fn smc2_config(&self) -> Result<(pcmc_core::smc2::Smc2Config, usize)> {
        use pcmc_core::smc2::{
            DEFAULT_EXCHANGE_BELOW, DEFAULT_MAX_PARTICLES, DEFAULT_MOVES, DEFAULT_NOISE_VARIANCE,
            DEFAULT_RENEW_MAX_MOVES, ExchangeRule, MAX_MOVES, Smc2Config, Smc2Proposal,
        };
        let sec = self.file.smc2.clone().unwrap_or_default();
        let path = &self.path;
        let nth = sec.theta_particles.unwrap_or(DEFAULT_THETA_PARTICLES);
        if !(2..=1 << 24).contains(&nth) {
            return Err(input(
                path,
                format!("smc2.theta_particles: {nth} is not in 2..=2^24"),
            ));
        }
        let nx = sec.particles.unwrap_or(DEFAULT_SMC2_PARTICLES);
        check_particles(path, "smc2.particles", nx)?;
        let ess_threshold = sec.ess_threshold.unwrap_or(0.5);
        if !(ess_threshold > 0.0 && ess_threshold <= 1.0) {
            return Err(input(
                path,
                format!("smc2.ess_threshold: {ess_threshold} is not in (0, 1]"),
            ));
        }
        let moves = sec.moves.unwrap_or(DEFAULT_MOVES);
        if moves == 0 || moves > MAX_MOVES {
            return Err(input(
                path,
                format!("smc2.moves: {moves} is not in 1..={MAX_MOVES}"),
            ));
        }
        let proposal = match sec.proposal.as_deref() {
            None => Smc2Proposal::default(),
            Some(p) => Smc2Proposal::parse(p).ok_or_else(|| {
                input(
                    path,
                    format!("smc2.proposal: {p:?} is not one of independent, random-walk"),
                )
            })?,
        };
        let below = sec.exchange_below.unwrap_or(DEFAULT_EXCHANGE_BELOW);
        if !(below > 0.0 && below < 1.0) {
            return Err(input(
                path,
                format!("smc2.exchange_below: {below} is not in (0, 1)"),
            ));
        }
        if let Some(f) = sec.renew
            && !(f > 0.0 && f <= 1.0)
        {
            return Err(input(path, format!("smc2.renew: {f} is not in (0, 1]")));
        }
        if let Some(m) = sec.renew_max_moves
            && !(moves..=MAX_MOVES).contains(&m)
        {
            return Err(input(
                path,
                format!(
                    "smc2.renew_max_moves: {m} is not in smc2.moves..={MAX_MOVES} ({moves}..={MAX_MOVES})"
                ),
            ));
        }
        let exchange_rule = match sec.exchange_rule.as_deref() {
            None => ExchangeRule::default(),
            Some(r) => ExchangeRule::parse(r).ok_or_else(|| {
                input(
                    path,
                    format!("smc2.exchange_rule: {r:?} is not one of noise, acceptance"),
                )
            })?,
        };
        let noise_variance = sec.noise_variance.unwrap_or(DEFAULT_NOISE_VARIANCE);
        if !(noise_variance > 0.0 && noise_variance.is_finite()) {
            return Err(input(
                path,
                format!("smc2.noise_variance: {noise_variance} is not a positive number"),
            ));
        }
        let max_particles = sec.max_particles.unwrap_or(DEFAULT_MAX_PARTICLES.max(nx));
        check_particles(path, "smc2.max_particles", max_particles)?;
        if max_particles < nx {
            return Err(input(
                path,
                format!("smc2.max_particles: {max_particles} is below smc2.particles ({nx})"),
            ));
        }
        Ok((
            Smc2Config {
                seed: self.mcmc.seed,
                theta_particles: nth,
                ess_threshold,
                moves,
                proposal,
                exchange_below: sec.exchange.unwrap_or(true).then_some(below),
                exchange_rule,
                noise_variance,
                renew: sec.renew,
                renew_max_moves: sec.renew_max_moves.unwrap_or(DEFAULT_RENEW_MAX_MOVES),
                max_particles,
                early_rejection: self.mcmc.early_rejection,
                final_move: sec.final_move.unwrap_or(false),
                replicate: 0,
                stream_tag: self.model_tag(),
            },
            nx,
        ))
    }
}

/// A fingerprint of the data alone (times, observed names, values): runs
/// of different models on the same data share it (`pcmc compare-models`).
pub fn data_fingerprint(data: &Data) -> String {
    let mut h = Sha256::new();
    for i in 0..data.len() {
        h.update(data.times()[i].to_le_bytes());
        for v in data.row(i) {
            h.update(v.to_le_bytes());
        }
    }
    h.update(data.names().join(",").as_bytes());
    let d = h.finalize();
    d.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The sections every job file needs.
const REQUIRED_SECTIONS: [&str; 4] = ["model", "observation", "initial", "parameters"];

/// Parses job-file text: a wrong value names its field as written
/// (`filter.particles`), the value found and what is allowed, with the line
/// and column; a file missing required sections names all of them.
fn parse_file(path: &Path, text: &str) -> Result<JobFile> {
    let syntax = |e: toml::de::Error| input(path, e.to_string().trim_end().to_string());
    let table: toml::Table = toml::from_str(text).map_err(syntax)?;
    let missing: Vec<&str> = REQUIRED_SECTIONS
        .iter()
        .copied()
        .filter(|s| !table.contains_key(*s))
        .collect();
    if !missing.is_empty() {
        return Err(input(
            path,
            format!(
                "{}: missing; a job needs the sections [model], [observation], [initial] and [parameters.NAME] \
                 (and [data] or --data): see docs/jobs.md",
                missing
                    .iter()
                    .map(|s| format!("[{s}]"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let de = toml::Deserializer::parse(text).map_err(syntax)?;
    serde_path_to_error::deserialize::<_, JobFile>(de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner().to_string();
        let inner = inner.trim_end();
        if field.is_empty() || field == "." {
            input(path, inner.to_string())
        } else {
            input(path, format!("{field}: {inner}"))
        }
    })
}

/// Checks a particle count.
///
/// # Errors
/// An input error naming `field` for 0 or more than 2^32 particles.
pub fn check_particles(path: &Path, field: &str, n: usize) -> Result<()> {
    if n == 0 || n > pcmc_core::resample::MAX_PARTICLES {
        return Err(input(path, format!("{field}: {n} is not in 1..=2^32")));
    }
    Ok(())
}

fn build_network(path: &Path, m: &ModelSection) -> Result<Network> {
    let err = |e: pcmc_core::Error| input(path, format!("model: {e}"));
    match (&m.preset, &m.reactions) {
        (Some(_), Some(_)) => Err(input(
            path,
            "model: give either `preset` or `reactions`, not both",
        )),
        (Some(p), None) => {
            if m.species.is_some() {
                return Err(input(
                    path,
                    "model.species: only for declared networks (remove it or the preset)",
                ));
            }
            match p.as_str() {
                "lotka-volterra" => {
                    let k = m.predators.ok_or_else(|| {
                        input(path, "model.predators: required for lotka-volterra")
                    })?;
                    Network::lotka_volterra(k).map_err(err)
                }
                "immigration-death" => {
                    if m.predators.is_some() {
                        return Err(input(path, "model.predators: only for lotka-volterra"));
                    }
                    Ok(Network::immigration_death())
                }
                other => Err(input(
                    path,
                    format!(
                        "model.preset: {other:?} is not one of lotka-volterra, immigration-death"
                    ),
                )),
            }
        }
        (None, Some(reactions)) => {
            if m.predators.is_some() {
                return Err(input(
                    path,
                    "model.predators: only for the lotka-volterra preset",
                ));
            }
            let species = m
                .species
                .clone()
                .ok_or_else(|| input(path, "model.species: required with model.reactions"))?;
            let mut params: Vec<String> = Vec::new();
            let specs: Vec<ReactionSpec> = reactions
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    if !params.contains(&r.rate) {
                        params.push(r.rate.clone());
                    }
                    let terms = |m: &BTreeMap<String, u32>| {
                        m.iter()
                            .map(|(s, c)| Term {
                                species: s.clone(),
                                count: *c,
                            })
                            .collect()
                    };
                    ReactionSpec {
                        name: r.name.clone().unwrap_or_else(|| format!("r{}", i + 1)),
                        reactants: terms(&r.reactants),
                        products: terms(&r.products),
                        rate: r.rate.clone(),
                    }
                })
                .collect();
            Network::new(species, params, &specs).map_err(err)
        }
        (None, None) => Err(input(
            path,
            "model: needs `preset` or `species` and `reactions`",
        )),
    }
}

/// A JSON value flattened to `a.b.c = value` entries (arrays by index).
pub fn flatten(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, x, out);
            }
        }
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), x, out);
            }
        }
        serde_json::Value::Null => {}
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}
