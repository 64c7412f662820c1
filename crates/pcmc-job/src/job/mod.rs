//! Job files: TOML descriptions of a model, its data, priors and run settings.
//! The README documents every field.

use crate::error::Result;
use crate::error::input;
use pcmc_core::filter::{
    DEFAULT_CAP, DEFAULT_MAX_EVENTS, DataSet, FilterConfig, FilterProblem, KernelChoice,
};
use pcmc_core::model::Network;
use pcmc_core::observation::{
    Data, InitialCount, InitialPrior, Observable, ObservationModel, Observations,
};
use pcmc_core::pmmh::{AdaptConfig, DEFAULT_INIT_SD, PmmhConfig, ProposalCovariance, StartPoints};
use pcmc_core::prior::Prior;
use pcmc_core::resample::Resampling;
use pcmc_core::tuning::{
    AutoParticles, ChainChecks, DEFAULT_CHECK_EVERY, DEFAULT_CHECK_PASSES, DEFAULT_TARGET_SD,
};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod file;
mod model;
pub mod sbml;

/// The name of a run directory's copy of the job's SBML file.
pub const SBML_COPY: &str = "model.xml";
pub mod observation;

pub use file::*;

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
    /// The names of θ's entries: the rate parameters, then the noise
    /// parameters of `[observables]`.
    pub parameters: Vec<String>,
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
    /// A run directory whose copies of the data and covariate files replace
    /// the job's (`pcmc report`).
    pub inputs_from: Option<PathBuf>,
    /// Each model species' initial count given by the model file (SBML),
    /// used where `[initial]` gives none.
    pub model_initial: Vec<Option<u64>>,
    /// The SBML file's bytes, for the run directory's copy.
    pub sbml: Option<Vec<u8>>,
    /// The parameters that give initial counts (`[initial] counts = { I =
    /// "I0" }`): the last entries of θ.
    pub initial_parameters: Vec<String>,
}

/// The copies of a run's inputs present in `dir`: `data.csv`, `data-2.csv`,
/// …, `covariates.csv`, `covariates-2.csv`, … (data set by data set, up to
/// the first set with neither), and `model.xml` (the SBML model).
pub fn input_copies_in(dir: &Path) -> Vec<String> {
    (0..)
        .map_while(|d| {
            let names = [input_copy("data", d), input_copy("covariates", d)];
            names.iter().any(|n| dir.join(n).exists()).then_some(names)
        })
        .flatten()
        .chain(std::iter::once(SBML_COPY.to_string()))
        .filter(|n| dir.join(n).exists())
        .collect()
}

/// The name of data set `d`'s copy in a run directory (`data.csv`,
/// `data-2.csv`, …), or of its covariates' (`covariates.csv`, …).
pub fn input_copy(kind: &str, d: usize) -> String {
    if d == 0 {
        format!("{kind}.csv")
    } else {
        format!("{kind}-{}.csv", d + 1)
    }
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

/// Whether `name` is 1–64 letters, digits, '_', '-' or '.' (the rule for
/// species, parameter and column names).
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// The parameters the initial counts of `ini` name (`"I0"`, `"N - I0"`),
/// in species order, each once, appended to `out`.
fn count_parameters(
    path: &Path,
    field: &str,
    ini: &InitialSection,
    out: &mut Vec<String>,
) -> Result<()> {
    for (s, c) in &ini.counts {
        if let CountSpec::Expr(e) = c {
            let (_, plus, minus) = parse_count(path, &format!("{field}.counts.{s}"), e)?;
            for p in [plus, minus].into_iter().flatten() {
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
    }
    Ok(())
}

/// Parses a count expression: whole numbers and at most one parameter
/// added and one subtracted (`"I0"`, `"N - I0"`, `"500 - I0"`, `"I0 + 2"`).
fn parse_count(path: &Path, field: &str, e: &str) -> Result<(i64, Option<String>, Option<String>)> {
    let bad = |why: &str| {
        input(
            path,
            format!(
                "{field}: {e:?} {why} (a count is a number, a parameter, or a total such as \"N - I0\")"
            ),
        )
    };
    let mut constant: i64 = 0;
    let (mut plus, mut minus): (Option<String>, Option<String>) = (None, None);
    let spaced = e.replace('+', " + ").replace('-', " - ");
    let mut sign = 1i64;
    let mut expect_term = true;
    for tok in spaced.split_whitespace() {
        match (tok, expect_term) {
            ("+", false) => (sign, expect_term) = (1, true),
            ("-", false) => (sign, expect_term) = (-1, true),
            ("-", true) => sign = -sign,
            (t, true) => {
                if let Ok(n) = t.parse::<i64>() {
                    constant = n
                        .checked_mul(sign)
                        .and_then(|v| constant.checked_add(v))
                        .filter(|v| v.unsigned_abs() <= 1_000_000_000_000)
                        .ok_or_else(|| bad("is out of range"))?;
                } else if is_plain_name(t) {
                    let slot = if sign > 0 { &mut plus } else { &mut minus };
                    if slot.is_some() {
                        return Err(bad("adds or subtracts more than one parameter"));
                    }
                    *slot = Some(t.to_string());
                } else {
                    return Err(bad(&format!(
                        "has {t:?}, neither a whole number nor a parameter name"
                    )));
                }
                (sign, expect_term) = (1, false);
            }
            _ => return Err(bad("is not a sum of terms")),
        }
    }
    if expect_term {
        return Err(bad("is incomplete"));
    }
    if plus.is_none() && minus.is_none() {
        return Err(bad("names no parameter (write a fixed count as a number)"));
    }
    if plus.is_some() && plus == minus {
        return Err(bad("adds and subtracts the same parameter"));
    }
    Ok((constant, plus, minus))
}

/// The initial-state law `ini` describes (`field` names it in messages:
/// `initial`, or `data[d].initial`); incidence counters start at 0. A
/// species that `ini` leaves out takes its count from `defaults` (an SBML
/// model's initial amounts); `params` are θ's names, which count
/// expressions refer to.
fn initial_prior(
    path: &Path,
    field: &str,
    ini: &InitialSection,
    network: &Network,
    species: &[String],
    defaults: &[Option<u64>],
    params: &[String],
) -> Result<InitialPrior> {
    for (part, keys) in [
        ("means", ini.means.keys().collect::<Vec<_>>()),
        ("counts", ini.counts.keys().collect()),
    ] {
        for k in keys {
            if !species.iter().any(|s| s == k) {
                return Err(input(
                    path,
                    format!(
                        "{field}.{part}: {k:?} is not a species ({})",
                        species.join(", ")
                    ),
                ));
            }
        }
    }
    let index = |name: Option<String>| -> Option<usize> {
        name.and_then(|n| params.iter().position(|p| *p == n))
    };
    let mut counts = species
        .iter()
        .zip(defaults.iter().chain(std::iter::repeat(&None)))
        .map(|(s, default)| match (ini.means.get(s), ini.counts.get(s)) {
            (Some(_), Some(_)) => Err(input(
                path,
                format!("{field}.counts: {s:?} also has a mean in {field}.means; give one"),
            )),
            (Some(m), None) => Ok(InitialCount::Poisson(*m)),
            (None, Some(CountSpec::Count(n))) => Ok(InitialCount::Fixed(*n)),
            (None, Some(CountSpec::Expr(e))) => {
                let (constant, plus, minus) = parse_count(path, &format!("{field}.counts.{s}"), e)?;
                Ok(InitialCount::Theta {
                    constant,
                    plus: index(plus),
                    minus: index(minus),
                })
            }
            (None, None) if default.is_some() => {
                Ok(InitialCount::Fixed(default.unwrap_or_default()))
            }
            (None, None) => Err(input(
                path,
                format!(
                    "{field}.means: no mean for species {s:?} (or a fixed count in {field}.counts)"
                ),
            )),
        })
        .collect::<Result<Vec<_>>>()?;
    // Incidence counters start at 0.
    counts.resize(network.species().len(), InitialCount::Fixed(0));
    InitialPrior::with_counts(network, counts).map_err(|e| core_err(path, e))
}

/// Refuses a datum its noise cannot produce, naming its file, line and
/// column.
fn check_data_values(
    obs: &[Observable],
    data: &Data,
    data_path: &Path,
    legacy: bool,
) -> Result<()> {
    for (c, name) in data.names().iter().enumerate() {
        let Some(o) = obs.iter().find(|o| &o.name == name) else {
            continue;
        };
        for i in 0..data.len() {
            let v = data.row(i)[c];
            if v.is_nan() {
                continue;
            }
            if let Some(why) = o.noise.refuses(v) {
                let why = match (legacy, why.split_once(" (")) {
                    (true, Some((head, _))) => format!(
                        "{head} (observation.model = \"poisson\" needs non-negative integers)"
                    ),
                    _ => why.to_string(),
                };
                return Err(input(
                    data_path,
                    format!(
                        "{}column {name:?}: {v} {why}",
                        crate::data::line_of_row(data_path, i)
                            .map_or(String::new(), |l| format!("line {l}, ")),
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn core_err(path: &Path, e: pcmc_core::Error) -> crate::error::InputError {
    input(path, e.to_string())
}

impl Job {
    /// Reads and validates a job file.
    ///
    /// # Errors
    /// An input error (exit status 2) naming the file, the field (with line
    /// and column for TOML syntax and schema errors) and the reason.
    pub fn load(path: &Path) -> Result<Job> {
        Job::load_with(path, None)
    }

    /// Validates job-file text read from `path`.
    ///
    /// # Errors
    /// As [`Job::load`].
    pub fn parse(path: &Path, text: String) -> Result<Job> {
        Job::parse_with(path, text, None)
    }

    /// [`Job::load`], reading the model's SBML file from the run directory
    /// `inputs` (its copy `model.xml`) when given.
    ///
    /// # Errors
    /// As [`Job::load`].
    pub fn load_with(path: &Path, inputs: Option<&Path>) -> Result<Job> {
        let meta = std::fs::metadata(path)
            .map_err(|e| input(path, format!("cannot read the job file: {e}")))?;
        if meta.is_dir() {
            return Err(input(path, "is a directory, not a job file"));
        }
        let bytes = std::fs::read(path)
            .map_err(|e| input(path, format!("cannot read the job file: {e}")))?;
        let text =
            String::from_utf8(bytes).map_err(|_| input(path, "the job file is not UTF-8 text"))?;
        let inputs = inputs.filter(|d| d.join(SBML_COPY).is_file());
        Job::parse_with(path, text, inputs)
    }

    /// [`Job::parse`], reading the SBML file from `inputs` when given.
    ///
    /// # Errors
    /// As [`Job::load`].
    pub fn parse_with(path: &Path, text: String, inputs: Option<&Path>) -> Result<Job> {
        let mut file = parse_file(path, &text)?;
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
        let infer: Vec<String> = file.parameters.keys().cloned().collect();
        let built = model::build(path, &file.model, &infer, inputs)?;
        let mut network = built.network;
        let model_initial = built.initial;
        let sbml_bytes = built.sbml.map(|(_, b)| b);
        file.model.sbml_sha256 = sbml_bytes.as_ref().map(|b| {
            Sha256::digest(b)
                .iter()
                .map(|x| format!("{x:02x}"))
                .collect()
        });
        // The model's own species (incidence counters come after them).
        let species = network.species().to_vec();
        if let Some(obs) = &file.observables {
            network = observation::with_counters(path, obs, network)?;
        }
        let mut params = network.parameters().to_vec();
        match (&file.observation, &file.observables) {
            (Some(_), Some(_)) => {
                return Err(input(
                    path,
                    "observables: give either [observation] (one law for every species column) or [observables.NAME] (one per column), not both",
                ));
            }
            (None, None) => {
                return Err(input(
                    path,
                    "[observation]: missing; a job needs [observation] or [observables.NAME] sections: see docs/jobs.md",
                ));
            }
            (None, Some(obs)) => {
                params.extend(observation::noise_parameters(path, obs, &network)?);
            }
            (Some(_), None) => {}
        }
        // Initial counts given by parameters, after the noise parameters.
        let mut initial_parameters: Vec<String> = Vec::new();
        count_parameters(path, "initial", &file.initial, &mut initial_parameters)?;
        for (d, set) in file.data.iter().flat_map(|d| d.sets()).enumerate() {
            if let Some(ini) = &set.initial {
                count_parameters(
                    path,
                    &format!("data[{d}].initial"),
                    ini,
                    &mut initial_parameters,
                )?;
            }
        }
        for p in &initial_parameters {
            if params.contains(p) {
                return Err(input(
                    path,
                    format!(
                        "initial.counts: {p:?} is already a rate or noise parameter: an initial count needs a parameter of its own"
                    ),
                ));
            }
        }
        params.extend(initial_parameters.iter().cloned());

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
                    format!("parameters.{p}.true: {t} is not a finite positive value"),
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
        let initial = initial_prior(
            path,
            "initial",
            &file.initial,
            &network,
            &species,
            &model_initial,
            &params,
        )?;
        for (d, set) in file.data.iter().flat_map(|d| d.sets()).enumerate() {
            if let Some(ini) = &set.initial {
                initial_prior(
                    path,
                    &format!("data[{d}].initial"),
                    ini,
                    &network,
                    &species,
                    &model_initial,
                    &params,
                )?;
                if let Some(t) = ini.time
                    && !t.is_finite()
                {
                    return Err(input(
                        path,
                        format!("data[{d}].initial.time: must be finite"),
                    ));
                }
            }
        }
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
        let mut filter = FilterConfig::new(start_particles, network.species().len());
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
        for &c in network.counters() {
            filter.caps.resize(network.species().len(), DEFAULT_CAP);
            filter.caps[c] = pcmc_core::model::COUNTER_CAP;
        }
        filter.max_events = f.max_events.unwrap_or(DEFAULT_MAX_EVENTS);
        if filter.caps.contains(&0) {
            return Err(input(path, "filter.cap: a cap must be at least 1"));
        }
        if filter.max_events == 0 {
            return Err(input(path, "filter.max_events: must be at least 1"));
        }

        // Observation sd shape is checked against the data when they are loaded.
        let legacy = file.observation.as_ref();
        match legacy.map_or("", |o| o.model.as_str()) {
            "" => {}
            "gaussian" => {
                if legacy.is_some_and(|o| o.sd.is_none()) {
                    return Err(input(
                        path,
                        "observation.sd: required for gaussian observations",
                    ));
                }
            }
            "poisson" => {
                if legacy.is_some_and(|o| o.sd.is_some()) {
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
        if let Some(obs) = &file.observables {
            // Check every field now, not only when data arrive.
            observation::build(path, obs, &network, &params)?;
        }
        Ok(Job {
            path: path.to_path_buf(),
            text,
            name,
            network,
            parameters: params,
            priors,
            truth,
            initial,
            filter,
            mcmc,
            file,
            inputs_from: None,
            model_initial,
            sbml: sbml_bytes,
            initial_parameters,
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
        self.data_sets()
            .first()
            .map(|d| self.base_dir().join(&d.path))
    }

    /// Data set `d`'s initial law and time (its own `initial`, else the
    /// job's `[initial]`).
    ///
    /// # Errors
    /// An input error naming `data[d].initial`.
    pub fn initial_of(&self, d: usize) -> Result<(InitialPrior, Option<f64>)> {
        match self.data_sets().get(d).and_then(|s| s.initial.as_ref()) {
            Some(ini) => {
                let n = self.network.species().len() - self.network.counters().len();
                let law = initial_prior(
                    &self.path,
                    &format!("data[{d}].initial"),
                    ini,
                    &self.network,
                    &self.network.species()[..n],
                    &self.model_initial,
                    &self.parameters,
                )?;
                Ok((law, ini.time.or(self.file.initial.time)))
            }
            None => Ok((self.initial.clone(), self.file.initial.time)),
        }
    }

    /// The data sets (`[data]` or `[[data]]`), in order.
    pub fn data_sets(&self) -> Vec<&DataSection> {
        self.file
            .data
            .as_ref()
            .map(DataSpec::sets)
            .unwrap_or_default()
    }

    /// The name of data set `d` (its `name`, else `set d+1`).
    pub fn set_name(&self, d: usize) -> String {
        self.data_sets()
            .get(d)
            .and_then(|s| s.name.clone())
            .unwrap_or_else(|| format!("set {}", d + 1))
    }

    /// The covariate table the rates need (`data.covariates`), or `None`
    /// when they use no covariate.
    ///
    /// # Errors
    /// An input error for a table that is missing, unused or unreadable.
    pub fn covariates(&self) -> Result<Option<pcmc_core::covariate::Covariates>> {
        self.covariates_of(0)
    }

    /// The covariate file of data set `d`, if it names one (resolved; the
    /// run directory's copy when reading inputs from one).
    pub fn covariate_path(&self, d: usize) -> Option<PathBuf> {
        let f = self.data_sets().get(d).and_then(|s| s.covariates.clone())?;
        Some(match &self.inputs_from {
            Some(dir) => dir.join(input_copy("covariates", d)),
            None => self.base_dir().join(f),
        })
    }

    /// The covariate table of data set `set` (see [`Job::covariates`]).
    ///
    /// # Errors
    /// As [`Job::covariates`].
    pub fn covariates_of(&self, d: usize) -> Result<Option<pcmc_core::covariate::Covariates>> {
        let file = self.covariate_path(d);
        let used = self.network.covariate_names();
        match (file, used.is_empty()) {
            (None, true) => Ok(None),
            (Some(_), true) => Err(input(
                &self.path,
                "data.covariates: no reaction rate uses a covariate (write rate = \"beta * NAME\"); remove it",
            )),
            (None, false) => Err(input(
                &self.path,
                format!(
                    "data.covariates: required: the rates use the covariates {}",
                    used.join(", ")
                ),
            )),
            (Some(f), false) => crate::data::read_covariates(&f).map(Some),
        }
    }

    /// The columns a data file for this job may have.
    pub fn data_columns(&self) -> crate::data::Columns {
        match &self.file.observables {
            None => crate::data::Columns::species(&self.network),
            Some(obs) => crate::data::Columns {
                names: obs.keys().cloned().collect(),
                what: "an observable of the job (declare it as [observables.NAME])".into(),
            },
        }
    }

    /// The noise parameters (θ's entries after the rate parameters, before
    /// the initial counts').
    pub fn noise_parameters(&self) -> &[String] {
        &self.parameters
            [self.network.parameters().len()..self.parameters.len() - self.initial_parameters.len()]
    }

    /// The observables of data whose columns are `names`.
    ///
    /// # Errors
    /// An input error if a per-species sd is missing or unknown.
    pub fn observables(&self, names: &[String]) -> Result<Vec<Observable>> {
        match &self.file.observables {
            Some(obs) => observation::build(&self.path, obs, &self.network, &self.parameters),
            None => {
                let model = self.observation_model(names)?;
                model
                    .observables(&self.network, names)
                    .map_err(|e| core_err(&self.path, e))
            }
        }
    }

    /// The first versions' observation model (`[observation]`) for data
    /// observing `names`.
    ///
    /// # Errors
    /// An input error if a per-species sd is missing or unknown.
    fn observation_model(&self, names: &[String]) -> Result<ObservationModel> {
        let obs = self
            .file
            .observation
            .as_ref()
            .expect("a job has [observation] or [observables]");
        match obs.model.as_str() {
            "poisson" => Ok(ObservationModel::Poisson),
            _ => {
                let sd = obs.sd.as_ref().expect("validated");
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

    /// The filtering problem for one data set read from `data_path`.
    ///
    /// # Errors
    /// An input error (naming `data_path` for data errors) if the data do not
    /// fit the job.
    pub fn problem(&self, data: Data, data_path: &Path) -> Result<FilterProblem> {
        self.problem_sets(vec![(data, data_path.to_path_buf())])
    }

    /// The filtering problem of the job's own data files (its `[data]` or
    /// `[[data]]` paths, or a run directory's copies when `inputs_from` is
    /// set).
    ///
    /// # Errors
    /// An input error naming the data file, line and column, or the job
    /// field.
    pub fn read_problem(&self) -> Result<FilterProblem> {
        let n = self.data_sets().len();
        if n == 0 {
            return Err(input(&self.path, "data.path: the job names no data file"));
        }
        let columns = self.data_columns();
        let parts = (0..n)
            .map(|d| {
                let p = match &self.inputs_from {
                    Some(dir) => dir.join(input_copy("data", d)),
                    None => self.base_dir().join(&self.data_sets()[d].path),
                };
                Ok((crate::data::read_data(&p, &columns)?, p))
            })
            .collect::<Result<Vec<_>>>()?;
        self.problem_sets(parts)
    }

    /// The filtering problem for the data sets `parts` (one per `[[data]]`
    /// table, in order; or one set, possibly from `--data`), each read from
    /// its path.
    ///
    /// # Errors
    /// An input error (naming the data file for data errors) if the data do
    /// not fit the job.
    pub fn problem_sets(&self, parts: Vec<(Data, PathBuf)>) -> Result<FilterProblem> {
        let sections = self.data_sets();
        let mut sets = Vec::with_capacity(parts.len());
        let mut obs = None;
        for (d, (data, data_path)) in parts.iter().enumerate() {
            let section = sections.get(d).copied();
            let own = section.and_then(|s| s.initial.as_ref());
            let field = match own {
                Some(_) => format!("data[{d}].initial"),
                None => "initial".to_string(),
            };
            let (initial, time) = self.initial_of(d)?;
            let t0 = time.unwrap_or(data.times()[0]);
            if t0 > data.times()[0] {
                return Err(input(
                    &self.path,
                    format!(
                        "{field}.time: {t0} is after the first observation time {} in {}",
                        data.times()[0],
                        data_path.display()
                    ),
                ));
            }
            let o = self.observables(data.names())?;
            check_data_values(&o, data, data_path, self.file.observation.is_some())?;
            obs.get_or_insert(o);
            let covariates = self.covariates_of(d)?;
            sets.push(DataSet {
                initial,
                t0,
                covariates,
            });
        }
        let first_path = parts.first().map(|p| p.1.clone()).unwrap_or_default();
        let data = Data::concat(parts.into_iter().map(|p| p.0).collect())
            .map_err(|e| input(&first_path, e.to_string()))?;
        let observations = Observations::new(
            obs.unwrap_or_default(),
            data,
            self.parameters.clone(),
            self.network.species().len(),
        )
        .map_err(|e| match e {
            pcmc_core::Error::Data(_) => input(&first_path, e.to_string()),
            other => core_err(&self.path, other),
        })?;
        // Population caps: the job's, else derived from the data.
        let mut filter = self.filter.clone();
        filter.caps = pcmc_core::filter::data_caps(&self.network, &observations);
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
        for &c in self.network.counters() {
            filter.caps[c] = pcmc_core::model::COUNTER_CAP;
        }
        FilterProblem::from_sets(self.network.clone(), observations, sets, filter).map_err(|e| {
            match e {
                pcmc_core::Error::Data(_) => input(&first_path, e.to_string()),
                other => core_err(&self.path, other),
            }
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
        hash_data(&mut h, data);
        let d = h.finalize();
        d.iter().take(16).map(|b| format!("{b:02x}")).collect()
    }
}

/// Feeds the data to a hash: times, values, column names, and (with several
/// data sets) each set's first row.
fn hash_data(h: &mut Sha256, data: &Data) {
    for i in 0..data.len() {
        h.update(data.times()[i].to_le_bytes());
        for v in data.row(i) {
            h.update(v.to_le_bytes());
        }
    }
    h.update(data.names().join(",").as_bytes());
    if data.n_sets() > 1 {
        for d in 0..data.n_sets() {
            h.update((data.set_rows(d).start as u64).to_le_bytes());
        }
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
        let v = if f.observables.is_some() {
            serde_json::json!([f.model, f.observables, f.initial, f.parameters])
        } else {
            serde_json::json!([f.model, f.observation, f.initial, f.parameters])
        };
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
    hash_data(&mut h, data);
    let d = h.finalize();
    d.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The sections every job file needs.
/// (`[observation]` may be replaced by `[observables.NAME]` sections, and
/// `[initial]` left out when an SBML model gives the initial amounts.)
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
        .filter(|s| {
            !(table.contains_key(*s)
                || (*s == "observation" && table.contains_key("observables"))
                || (*s == "initial"
                    && table
                        .get("model")
                        .and_then(|m| m.as_table())
                        .is_some_and(|m| m.contains_key("sbml"))))
        })
        .collect();
    if !missing.is_empty() {
        return Err(input(
            path,
            format!(
                "{}: missing; a job needs the sections [model], [observation] (or [observables.NAME]), [initial] \
                 (unless an SBML model gives it) and [parameters.NAME] (and [data] or --data): see docs/jobs.md",
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
