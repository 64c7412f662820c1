//! pcmc's Python entry, the extension module `pcmc._pcmc` (the package
//! `pcmc` wraps it): load a job, estimate log-likelihoods with the particle
//! filter, simulate the model. The GIL is released while Rust computes;
//! bad input raises `ValueError` (or `TypeError`) naming the argument, with
//! the command line's own message for a bad job or data file.

use numpy::ndarray::Array3;
use numpy::{IntoPyArray, PyArray1, PyArray3, PyReadonlyArray2};
use pcmc_core::LikelihoodExecutor;
use pcmc_core::filter::{FilterKey, FilterProblem};
use pcmc_core::rng::{Purpose, StreamKey};
use pcmc_job::job::Job as JobFile;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use rayon::prelude::*;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

fn value_error(e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// A pcmc job: the model, its data, priors and settings, as `pcmc check`
/// validates them. Load one with `Job.from_toml(path)`.
#[pyclass(frozen, module = "pcmc._pcmc")]
struct Job {
    job: Arc<JobFile>,
    /// The filtering problem of the job's data, read on first use.
    problem: OnceLock<Arc<FilterProblem>>,
}

impl Job {
    fn problem(&self) -> PyResult<Arc<FilterProblem>> {
        if let Some(p) = self.problem.get() {
            return Ok(p.clone());
        }
        let p = Arc::new(self.job.read_problem().map_err(value_error)?);
        Ok(self.problem.get_or_init(|| p).clone())
    }
}

#[pymethods]
impl Job {
    /// Loads and checks a job file (TOML), as `pcmc check` does; a bad file
    /// raises `ValueError` with the command line's message.
    #[staticmethod]
    fn from_toml(path: PathBuf) -> PyResult<Job> {
        let job = JobFile::load(&path).map_err(value_error)?;
        Ok(Job {
            job: Arc::new(job),
            problem: OnceLock::new(),
        })
    }

    /// The job of a `pcmc run` directory: its `job.toml`, with the copies
    /// of its inputs (data, covariates, SBML model) the run kept.
    #[staticmethod]
    fn from_run(dir: PathBuf) -> PyResult<Job> {
        let mut job = JobFile::load_with(&dir.join("job.toml"), Some(&dir)).map_err(value_error)?;
        job.inputs_from = Some(dir);
        Ok(Job {
            job: Arc::new(job),
            problem: OnceLock::new(),
        })
    }

    /// Reads the job's data and checks them against the model (what `pcmc
    /// check` does after the job file); raises `ValueError` with the
    /// command line's message.
    fn check(&self) -> PyResult<()> {
        self.problem().map(|_| ())
    }

    /// The job's name.
    #[getter]
    fn name(&self) -> String {
        self.job.name.clone()
    }

    /// The names of θ's entries: rate parameters, then noise parameters,
    /// then initial counts.
    #[getter]
    fn parameters(&self) -> Vec<String> {
        self.job.parameters.clone()
    }

    /// The state's species (incidence counters last).
    #[getter]
    fn species(&self) -> Vec<String> {
        self.job.network.species().to_vec()
    }

    /// θ's true values, if the job gives every one (`true = …`).
    #[getter]
    fn truth(&self) -> Option<Vec<f64>> {
        self.job.truth.clone()
    }

    /// The job's particle count (`filter.particles`).
    #[getter]
    fn particles(&self) -> usize {
        self.job.filter.particles
    }

    /// The job's data: `time`, one array per observed column (NaN where a
    /// value is missing) and `set` (the data set of each row, from 0).
    fn observed<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        let problem = self.problem()?;
        let data = problem.data();
        let out = pyo3::types::PyDict::new(py);
        out.set_item("time", data.times().to_vec().into_pyarray(py))?;
        for (c, name) in data.names().iter().enumerate() {
            let col: Vec<f64> = (0..data.len()).map(|i| data.row(i)[c]).collect();
            out.set_item(name, col.into_pyarray(py))?;
        }
        let sets: Vec<u64> = (0..data.len()).map(|i| data.set_of(i) as u64).collect();
        out.set_item("set", sets.into_pyarray(py))?;
        Ok(out)
    }

    fn __repr__(&self) -> String {
        format!(
            "Job(name={:?}, parameters={:?}, species={:?})",
            self.job.name,
            self.job.parameters,
            self.job.network.species()
        )
    }
}

/// Checks θ: one finite value per parameter.
fn check_theta(job: &JobFile, theta: &[f64], arg: &str) -> PyResult<()> {
    let d = job.parameters.len();
    if theta.len() != d {
        return Err(PyValueError::new_err(format!(
            "{arg}: {} values for {d} parameters ({})",
            theta.len(),
            job.parameters.join(", ")
        )));
    }
    if let Some((i, v)) = theta.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(PyValueError::new_err(format!(
            "{arg}: {} = {v} is not a finite number",
            job.parameters[i]
        )));
    }
    Ok(())
}

fn with_particles(
    problem: &Arc<FilterProblem>,
    particles: Option<usize>,
) -> PyResult<Arc<FilterProblem>> {
    match particles {
        None => Ok(problem.clone()),
        Some(0) => Err(PyValueError::new_err("particles: must be at least 1")),
        Some(n) => {
            Ok(Arc::new(problem.with_particles(n).map_err(|e| {
                PyValueError::new_err(format!("particles: {e}"))
            })?))
        }
    }
}

/// The thread count asked for (`None`: pcmc's default).
fn thread_count(threads: Option<usize>) -> PyResult<usize> {
    match threads {
        Some(0) => Err(PyValueError::new_err("threads: must be at least 1")),
        Some(n) => Ok(n),
        None => Ok(pcmc_rayon::default_threads()),
    }
}

/// The rows of `thetas` (`[B, d]`), each checked.
fn theta_rows(job: &JobFile, thetas: &PyReadonlyArray2<'_, f64>) -> PyResult<Vec<Vec<f64>>> {
    let rows: Vec<Vec<f64>> = thetas.as_array().outer_iter().map(|r| r.to_vec()).collect();
    for (b, r) in rows.iter().enumerate() {
        check_theta(job, r, &format!("thetas[{b}]"))?;
    }
    Ok(rows)
}

fn pool(threads: Option<usize>) -> PyResult<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(thread_count(threads)?)
        .build()
        .map_err(|e| PyValueError::new_err(format!("threads: {e}")))
}

/// One particle-filter estimate of the log-likelihood at `theta` (its
/// parameters in `Job.parameters` order), with the job's particle count
/// (or `particles`) and the random streams of `seed`: the estimate `pcmc`
/// computes for chain 0, iteration `iteration`, bit for bit, whatever
/// `threads` is. −inf when θ is outside the model (a negative rate, a
/// noise parameter out of range) or every particle fails.
#[pyfunction]
#[pyo3(signature = (job, theta, *, particles=None, seed=0, iteration=0, threads=None))]
fn loglik(
    py: Python<'_>,
    job: &Job,
    theta: Vec<f64>,
    particles: Option<usize>,
    seed: u64,
    iteration: u64,
    threads: Option<usize>,
) -> PyResult<f64> {
    check_theta(&job.job, &theta, "theta")?;
    let problem = with_particles(&job.problem()?, particles)?;
    let threads = thread_count(threads)?;
    py.detach(move || {
        let mut exec = pcmc_rayon::rayon_executor(threads).map_err(|e| e.to_string())?;
        let key = FilterKey {
            seed,
            chain: 0,
            iteration,
        };
        exec.log_likelihood(&problem, &theta, key)
            .map(|o| o.loglik)
            .map_err(|e| e.to_string())
    })
    .map_err(PyValueError::new_err)
}

/// Log-likelihood estimates at each row of `thetas` (shape `[B, d]`), the
/// passes spread over `threads` threads: row `b` is `loglik(job,
/// thetas[b], seed=seed, iteration=b)`, bit for bit.
#[pyfunction]
#[pyo3(signature = (job, thetas, *, particles=None, seed=0, threads=None))]
fn loglik_batch<'py>(
    py: Python<'py>,
    job: &Job,
    thetas: PyReadonlyArray2<'py, f64>,
    particles: Option<usize>,
    seed: u64,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let rows = theta_rows(&job.job, &thetas)?;
    let problem = with_particles(&job.problem()?, particles)?;
    let pool = pool(threads)?;
    let out: Result<Vec<f64>, String> = py.detach(move || {
        pool.install(|| {
            rows.par_iter()
                .enumerate()
                .map_init(pcmc_core::serial, |exec, (b, theta)| {
                    let key = FilterKey {
                        seed,
                        chain: 0,
                        iteration: b as u64,
                    };
                    exec.log_likelihood(&problem, theta, key)
                        .map(|o| o.loglik)
                        .map_err(|e| e.to_string())
                })
                .collect()
        })
    });
    Ok(out.map_err(PyValueError::new_err)?.into_pyarray(py))
}

/// Simulates the job's model at each row of `thetas` (shape `[B, d]`),
/// recording the state at `times` (increasing, at or after the initial
/// time): an array of counts of shape `[B, len(times), S]` (species in
/// `Job.species` order), handed to NumPy without a copy. Trajectory `b`
/// draws from the streams of (`seed`, `b`); its initial state is drawn
/// from data set `set`'s initial law (counted from 0). Spread over
/// `threads` threads; the result does not depend on their number.
#[pyfunction]
#[pyo3(signature = (job, thetas, times, *, seed=0, set=0, threads=None))]
fn simulate<'py>(
    py: Python<'py>,
    job: &Job,
    thetas: PyReadonlyArray2<'py, f64>,
    times: Vec<f64>,
    seed: u64,
    set: usize,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyArray3<u64>>> {
    let j = job.job.clone();
    let rows = theta_rows(&j, &thetas)?;
    let n_sets = j.data_sets().len().max(1);
    if set >= n_sets {
        return Err(PyValueError::new_err(format!(
            "set: {set} is not a data set of the job (0..{n_sets})"
        )));
    }
    if times.is_empty() {
        return Err(PyValueError::new_err("times: give at least one time"));
    }
    if let Some((i, t)) = times.iter().enumerate().find(|(_, t)| !t.is_finite()) {
        return Err(PyValueError::new_err(format!(
            "times[{i}]: {t} is not a finite number"
        )));
    }
    if let Some(i) = (1..times.len()).find(|&i| times[i] <= times[i - 1]) {
        return Err(PyValueError::new_err(format!(
            "times[{i}]: {} is not after times[{}] = {}",
            times[i],
            i - 1,
            times[i - 1]
        )));
    }
    let (initial, time) = j.initial_of(set).map_err(value_error)?;
    let t0 = time.unwrap_or(times[0]);
    if t0 > times[0] {
        return Err(PyValueError::new_err(format!(
            "times[0]: {} is before the initial time {t0}",
            times[0]
        )));
    }
    let covariates = j.covariates_of(set).map_err(value_error)?;
    let pool = pool(threads)?;
    let (b_n, t_n, s_n) = (rows.len(), times.len(), j.network.species().len());
    let flat: Vec<u64> = py.detach(move || {
        pool.install(|| {
            rows.par_iter()
                .enumerate()
                .flat_map_iter(|(b, theta)| {
                    let tr = pcmc_core::simulate::simulate(
                        &j.network,
                        theta,
                        &initial,
                        &[],
                        covariates.as_ref(),
                        t0,
                        &times,
                        &j.filter.caps,
                        j.filter.max_events,
                        StreamKey::new(seed, set as u64, b as u64, 0, 0, Purpose::Simulate),
                    );
                    tr.states.into_iter().flatten()
                })
                .collect()
        })
    });
    let arr = Array3::from_shape_vec((b_n, t_n, s_n), flat)
        .map_err(|e| PyValueError::new_err(format!("internal shape error: {e}")))?;
    Ok(arr.into_pyarray(py))
}

/// The kept draws of a PMMH run: one entry per kept row, in the order
/// `pcmc run` writes `chain.csv` (iteration by iteration, chains in order).
#[pyclass(frozen, module = "pcmc._pcmc")]
struct Draws {
    /// Chain of each row.
    #[pyo3(get)]
    chain: Py<PyArray1<u64>>,
    /// Iteration of each row (counting burn-in).
    #[pyo3(get)]
    iteration: Py<PyArray1<u64>>,
    /// The log-likelihood estimate of the row's θ.
    #[pyo3(get)]
    loglik: Py<PyArray1<f64>>,
    /// Whether the row's proposal was accepted.
    #[pyo3(get)]
    accepted: Py<PyArray1<bool>>,
    /// The particle count of the row's chain at that iteration.
    #[pyo3(get)]
    particles: Py<PyArray1<u64>>,
    /// θ, one row per draw: shape `[N, d]`.
    #[pyo3(get)]
    theta: Py<numpy::PyArray2<f64>>,
    /// θ's names.
    #[pyo3(get)]
    names: Vec<String>,
    /// Burn-in iterations and kept iterations per chain.
    #[pyo3(get)]
    burn_in: u64,
    /// Kept iterations per chain.
    #[pyo3(get)]
    iterations: u64,
    /// Thinning.
    #[pyo3(get)]
    thin: u64,
}

/// Runs PMMH on the job as `pcmc run` does (the same chains, bit for bit,
/// for the same seed, chain count, iterations and particle count, whatever
/// `threads` is), the GIL released between iterations; Ctrl-C stops it
/// within one iteration and raises `KeyboardInterrupt`. `None` keeps the
/// job's value (`iterations` counts the kept iterations after burn-in, as
/// `pcmc run --iterations` does; `particles` fixes the count, as
/// `--particles` does).
#[pyfunction]
#[pyo3(signature = (job, *, seed=None, chains=None, iterations=None, particles=None, threads=None, first_chain=0))]
fn sample_pmmh(
    py: Python<'_>,
    job: &Job,
    seed: Option<u64>,
    chains: Option<usize>,
    iterations: Option<u64>,
    particles: Option<usize>,
    threads: Option<usize>,
    first_chain: u64,
) -> PyResult<Draws> {
    let mut j = (*job.job).clone();
    if let Some(n) = particles {
        if n == 0 {
            return Err(PyValueError::new_err("particles: must be at least 1"));
        }
        j.filter.particles = n;
        j.mcmc.checks.auto = None;
    }
    if let Some(s) = seed {
        j.mcmc.seed = s;
    }
    if let Some(c) = chains {
        if !(1..=1024).contains(&c) {
            return Err(PyValueError::new_err(format!(
                "chains: {c} is not in 1..=1024"
            )));
        }
        j.mcmc.chains = c;
    }
    if let Some(n) = iterations {
        if n == 0 {
            return Err(PyValueError::new_err("iterations: must be at least 1"));
        }
        j.mcmc.iterations = n;
    }
    let threads = thread_count(threads)?;
    let problem = if particles.is_some() {
        j.read_problem().map_err(value_error)?
    } else {
        (*job.problem()?).clone()
    };
    let pmmh = pcmc_core::pmmh::Pmmh::new(problem, j.priors.clone(), j.mcmc.clone())
        .map_err(|e| PyValueError::new_err(format!("{}: {e}", j.path.display())))?;
    let pmmh = Arc::new(pmmh);
    let exec = Arc::new(std::sync::Mutex::new(
        pcmc_rayon::rayon_executor(threads).map_err(value_error)?,
    ));
    let err = |e: pcmc_core::Error| PyValueError::new_err(e.to_string());
    // Starting points.
    let (p, x) = (pmmh.clone(), exec.clone());
    let first = first_chain;
    let n_chains = j.mcmc.chains as u64;
    let mut states = py
        .detach(move || {
            let mut exec = x.lock().expect("the executor's lock");
            (first..first + n_chains)
                .map(|c| p.init_chain(&mut *exec, c).map(|(st, _)| st))
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(|e| match e {
            pcmc_core::Error::NoStart { .. } => {
                PyValueError::new_err(format!("{}: mcmc.init: {e}", j.path.display()))
            }
            other => err(other),
        })?;
    let total = pmmh.total_iterations();
    let d = j.parameters.len();
    let (mut chain, mut iteration, mut loglik, mut accepted, mut parts, mut theta) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for _ in 1..=total {
        let (p, x) = (pmmh.clone(), exec.clone());
        let (next, rows) = py
            .detach(move || {
                let mut exec = x.lock().expect("the executor's lock");
                let mut rows = Vec::new();
                for st in states.iter_mut() {
                    let rec = p.step(&mut *exec, st)?;
                    if rec.kept {
                        rows.push((st.clone(), rec.accepted, p.particles_of(st)));
                    }
                }
                p.relocate(&mut states);
                Ok::<_, pcmc_core::Error>((states, rows))
            })
            .map_err(err)?;
        states = next;
        for (st, acc, np) in rows {
            chain.push(st.chain);
            iteration.push(st.iteration);
            loglik.push(st.loglik);
            accepted.push(acc);
            parts.push(np);
            theta.extend_from_slice(&st.theta);
        }
        // Ctrl-C (SIGINT) raises KeyboardInterrupt here.
        py.check_signals()?;
    }
    let n = chain.len();
    let theta = numpy::ndarray::Array2::from_shape_vec((n, d), theta)
        .map_err(|e| PyValueError::new_err(format!("internal shape error: {e}")))?;
    Ok(Draws {
        chain: chain.into_pyarray(py).unbind(),
        iteration: iteration.into_pyarray(py).unbind(),
        loglik: loglik.into_pyarray(py).unbind(),
        accepted: accepted.into_pyarray(py).unbind(),
        particles: parts.into_pyarray(py).unbind(),
        theta: theta.into_pyarray(py).unbind(),
        names: j.parameters.clone(),
        burn_in: j.mcmc.burn_in,
        iterations: j.mcmc.iterations,
        thin: j.mcmc.thin,
    })
}

/// The extension module.
#[pymodule]
fn _pcmc(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Job>()?;
    m.add_function(wrap_pyfunction!(loglik, m)?)?;
    m.add_function(wrap_pyfunction!(loglik_batch, m)?)?;
    m.add_function(wrap_pyfunction!(simulate, m)?)?;
    m.add_function(wrap_pyfunction!(sample_pmmh, m)?)?;
    m.add_class::<Draws>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
