//! A corpus of bad inputs: each exits with status 2, names the problem and
//! never panics.
mod common;

use common::pcmc;
use std::path::{Path, PathBuf};

const DATA: &str = "time,prey\n0,50\n2,150\n4,230\n";

fn base_job(data: &Path) -> String {
    format!(
        r#"name = "bad"
seed = 1
[model]
preset = "lotka-volterra"
predators = 1
[data]
path = "{}"
[observation]
model = "gaussian"
sd = 10.0
[initial]
means = {{ prey = 50, pred1 = 100 }}
[parameters.birth]
prior = {{ dist = "log-uniform", lower = 0.01, upper = 100.0 }}
[parameters.predation1]
prior = {{ dist = "log-uniform", lower = 0.00005, upper = 0.5 }}
[parameters.death1]
prior = {{ dist = "log-uniform", lower = 0.006, upper = 60.0 }}
[filter]
particles = 16
[mcmc]
burn_in = 1
iterations = 2
"#,
        data.display()
    )
}

/// Edits a job text.
type Edit = Option<Box<dyn Fn(&str) -> String>>;

struct Case {
    name: &'static str,
    /// Edits the job text (None: use the base job).
    job: Edit,
    /// Replaces the data text.
    data: Option<&'static [u8]>,
    /// Extra arguments; `{job}` and `{dir}` are substituted.
    args: Vec<&'static str>,
    /// Expected fragments of the error message, separated by ` && `.
    expect: &'static str,
}

fn edit(f: impl Fn(&str) -> String + 'static) -> Edit {
    Some(Box::new(f))
}

fn cases() -> Vec<Case> {
    let run = || vec!["run", "{job}", "--out", "{dir}/out", "--quiet"];
    let c = |name, job, data, args, expect| Case {
        name,
        job,
        data,
        args,
        expect,
    };
    let mut all = Vec::new();
    let auto = |a: &'static str| {
        edit(move |j: &str| {
            j.replace(
                "particles = 16",
                &format!("particles = \"auto\"\nauto = {{ {a} }}"),
            )
        })
    };
    all.push(c(
        "particles: a word other than auto",
        edit(|j: &str| j.replace("particles = 16", "particles = \"many\"")),
        None,
        run(),
        "filter.particles: \"many\" is neither a count nor \"auto\"",
    ));
    all.push(c(
        "auto bounds with a fixed count",
        edit(|j: &str| j.replace("particles = 16", "particles = 16\nauto = { min = 5 }")),
        None,
        run(),
        "filter.auto: only applies to filter.particles = \"auto\"",
    ));
    all.push(c(
        "auto: min above max",
        auto("min = 500, max = 50"),
        None,
        run(),
        "filter.auto: min = 500 is above max = 50",
    ));
    all.push(c(
        "auto: zero particles",
        auto("min = 0"),
        None,
        run(),
        "filter.auto.min: 0 is not in 1..=2^32",
    ));
    all.push(c(
        "auto: start outside the bounds",
        auto("min = 50, max = 100, start = 10"),
        None,
        run(),
        "filter.auto.start",
    ));
    all.push(c(
        "auto: target sd not positive",
        auto("target_sd = -1.0"),
        None,
        run(),
        "filter.auto.target_sd",
    ));
    all.push(c(
        "auto: unknown field",
        auto("minimum = 5"),
        None,
        run(),
        "unknown field `minimum`",
    ));
    all.push(c(
        "one check pass",
        edit(|j: &str| j.replace("iterations = 2", "iterations = 2\ncheck_passes = 1")),
        None,
        run(),
        "`mcmc.check_passes`: 1 is not in 2..=1000",
    ));
    all.push(c(
        "checks every 0 iterations",
        edit(|j: &str| j.replace("iterations = 2", "iterations = 2\ncheck_every = 0")),
        None,
        run(),
        "`mcmc.check_every`: must be at least 1",
    ));
    if !cfg!(feature = "mpi") {
        all.push(c(
            "mpi not compiled",
            None,
            None,
            vec!["run", "{job}", "--executor", "mpi", "--out", "{dir}/o"],
            "feature `mpi`",
        ));
    }
    if !cfg!(feature = "dataflow") {
        all.push(c(
            "dataflow not compiled",
            None,
            None,
            vec!["run", "{job}", "--executor", "dataflow", "--out", "{dir}/o"],
            "feature `dataflow`",
        ));
    } else {
        all.push(c(
            "dataflow: bad failure rate",
            None,
            None,
            vec![
                "run",
                "{job}",
                "--executor",
                "dataflow",
                "--out",
                "{dir}/o",
                "--env",
                "PCMC_DATAFLOW_FAIL_RATE=2",
            ],
            "PCMC_DATAFLOW_FAIL_RATE",
        ));
    }
    all.extend(vec![
        c(
            "malformed toml",
            edit(|j| j.replace("seed = 1", "seed = ")),
            None,
            run(),
            "line 2",
        ),
        c(
            "unknown top-level field",
            edit(|j| format!("colour = 3\n{j}")),
            None,
            run(),
            "unknown field `colour`",
        ),
        c(
            "unknown filter field",
            edit(|j| j.replace("particles = 16", "particles = 16\nparticels = 3")),
            None,
            run(),
            "unknown field `particels`",
        ),
        c(
            "negative prior bound",
            edit(|j| j.replace("lower = 0.01,", "lower = -1.0,")),
            None,
            run(),
            "parameters.birth.prior && found lower = -1",
        ),
        c(
            "unknown species in initial",
            edit(|j| j.replace("pred1 = 100 }", "pred1 = 100, wolf = 3 }")),
            None,
            run(),
            "\"wolf\" is not a species",
        ),
        c(
            "missing initial mean",
            edit(|j| j.replace(", pred1 = 100", "")),
            None,
            run(),
            "no mean for species \"pred1\"",
        ),
        c("empty data", None, Some(b""), run(), "empty"),
        c(
            "header only",
            None,
            Some(b"time,prey\n"),
            run(),
            "no data rows",
        ),
        c(
            "non-increasing times",
            None,
            Some(b"time,prey\n0,50\n2,60\n2,70\n"),
            run(),
            "line 4, column \"time\"",
        ),
        c(
            "infinity in data",
            None,
            Some(b"time,prey\n0,50\n2,inf\n"),
            run(),
            "line 3, column \"prey\"",
        ),
        c(
            "a column with no observed value",
            None,
            Some(b"time,prey\n0,NA\n2,nan\n3,\n"),
            run(),
            "column \"prey\" has no observed value",
        ),
        c(
            "a missing time",
            None,
            Some(b"time,prey\n0,50\nNA,60\n"),
            run(),
            "line 3, column \"time\": the time is missing",
        ),
        c(
            "text in data",
            None,
            Some(b"time,prey\n0,50\n2,lots\n"),
            run(),
            "\"lots\" is not a number",
        ),
        c(
            "wrong field count",
            None,
            Some(b"time,prey\n0,50\n2,60,7\n"),
            run(),
            "line 3",
        ),
        c(
            "unknown data column",
            None,
            Some(b"time,wolf\n0,50\n"),
            run(),
            "\"wolf\" is not a species",
        ),
        c(
            "first column not time",
            None,
            Some(b"t,prey\n0,50\n"),
            run(),
            "first column must be `time`",
        ),
        c(
            "binary garbage data",
            None,
            Some(b"\xff\xfe\x00\x01garbage\n\x00\x00"),
            run(),
            "data.csv",
        ),
        c(
            "missing job file",
            None,
            None,
            vec!["run", "{dir}/nope.toml"],
            "nope.toml",
        ),
        c(
            "job is a directory",
            None,
            None,
            vec!["run", "{dir}"],
            "is a directory",
        ),
        c(
            "missing data file",
            edit(|j| j.replace("data.csv", "absent.csv")),
            None,
            run(),
            "absent.csv",
        ),
        c(
            "zero particles in job",
            edit(|j| j.replace("particles = 16", "particles = 0")),
            None,
            run(),
            "filter.particles",
        ),
        c(
            "unknown kernel in job",
            edit(|j| j.replace("particles = 16", "particles = 16\nkernel = \"gpu\"")),
            None,
            run(),
            "filter.kernel",
        ),
        c(
            "--particles 0",
            None,
            None,
            vec!["run", "{job}", "--particles", "0"],
            "--particles",
        ),
        c(
            "--threads 0",
            None,
            None,
            vec!["run", "{job}", "--threads", "0"],
            "--threads",
        ),
        c(
            "--kernel avx512",
            None,
            None,
            vec!["run", "{job}", "--kernel", "avx512"],
            "--kernel",
        ),
        c(
            "--threads abc",
            None,
            None,
            vec!["run", "{job}", "--threads", "abc"],
            "--threads",
        ),
        c(
            "--iterations -5",
            None,
            None,
            vec!["run", "{job}", "--iterations", "-5"],
            "'-5'",
        ),
        c(
            "unknown executor",
            None,
            None,
            vec!["run", "{job}", "--executor", "spark", "--out", "{dir}/o"],
            "\"spark\" is not one of",
        ),
        c(
            "unknown preset",
            edit(|j| j.replace("\"lotka-volterra\"", "\"sir\"")),
            None,
            run(),
            "model.preset",
        ),
        c(
            "too many predators",
            edit(|j| j.replace("predators = 1", "predators = 12")),
            None,
            run(),
            "1 to 8 predators",
        ),
        c(
            "gaussian without sd",
            edit(|j| j.replace("sd = 10.0\n", "")),
            None,
            run(),
            "observation.sd",
        ),
        c(
            "negative sd",
            edit(|j| j.replace("sd = 10.0", "sd = -2.0")),
            None,
            run(),
            "observation.sd",
        ),
        c(
            "init outside prior",
            edit(|j| {
                j.replace(
                    "[parameters.birth]\n",
                    "[parameters.birth]\ninit = 1000.0\n",
                )
            }),
            None,
            run(),
            "parameters.birth.init",
        ),
        c(
            "unknown parameter",
            edit(|j| {
                format!("{j}[parameters.gamma]\nprior = {{ dist = \"fixed\", value = 1.0 }}\n")
            }),
            None,
            run(),
            "parameters.gamma",
        ),
        c(
            "missing parameter",
            edit(|j| {
                j.replace("[parameters.death1]\nprior = { dist = \"log-uniform\", lower = 0.006, upper = 60.0 }\n", "")
            }),
            None,
            run(),
            "parameters.death1: missing",
        ),
        c(
            "unknown prior",
            edit(|j| {
                j.replace(
                    "dist = \"log-uniform\", lower = 0.01",
                    "dist = \"cauchy\", lower = 0.01",
                )
            }),
            None,
            run(),
            "cauchy",
        ),
        c(
            "bad resampling",
            edit(|j| j.replace("particles = 16", "particles = 16\nresampling = \"magic\"")),
            None,
            run(),
            "filter.resampling",
        ),
        c(
            "zero chains",
            edit(|j| j.replace("iterations = 2", "iterations = 2\nchains = 0")),
            None,
            run(),
            "mcmc.chains",
        ),
        c(
            "unknown start kind",
            edit(|j| j.replace("iterations = 2", "iterations = 2\ninit = \"random\"")),
            None,
            run(),
            "mcmc.init",
        ),
        c(
            "negative init_sd",
            edit(|j| j.replace("iterations = 2", "iterations = 2\ninit_sd = -0.5")),
            None,
            run(),
            "mcmc.init_sd",
        ),
        c(
            "early_rejection not a boolean",
            edit(|j| j.replace("iterations = 2", "iterations = 2\nearly_rejection = \"yes\"")),
            None,
            run(),
            "early_rejection",
        ),
        c(
            "init_sd with prior starts",
            edit(|j| j.replace("iterations = 2", "iterations = 2\ninit = \"prior\"\ninit_sd = 0.1")),
            None,
            run(),
            "mcmc.init_sd",
        ),
        c(
            // Every particle starts above the cap, so every start's estimate
            // is -inf, for every redraw.
            "no start with a finite likelihood",
            edit(|j| {
                j.replace("particles = 16", "particles = 16\ncap = 1000")
                    .replace("prey = 50,", "prey = 5000,")
            }),
            None,
            run(),
            "no starting point with a finite log-likelihood",
        ),
        c(
            "proposal_cov not PD",
            edit(|j| {
                j.replace("iterations = 2", "iterations = 2\nproposal_cov = [[1.0, 2.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 1.0]]")
            }),
            None,
            run(),
            "positive definite",
        ),
        c(
            "huge number",
            edit(|j| j.replace("particles = 16", "particles = 99999999999999999999999")),
            None,
            run(),
            "line",
        ),
        c(
            "unicode species",
            edit(|j| j.replace("pred1 = 100 }", "pred1 = 100, \"ß狼\" = 2 }")),
            None,
            run(),
            "is not a species",
        ),
        c(
            "deep nesting",
            edit(|j| format!("x = {}1{}\n{j}", "[".repeat(200), "]".repeat(200))),
            None,
            run(),
            "bad/job.toml",
        ),
        c(
            "not utf-8 job",
            edit(|_| String::from_utf8_lossy(b"\xff\xfe").into_owned() + "\u{0}"),
            None,
            run(),
            "job.toml",
        ),
        c(
            "poisson with fractional data",
            edit(|j| j.replace("model = \"gaussian\"\nsd = 10.0", "model = \"poisson\"")),
            Some(b"time,prey\n0,50\n# a comment\n2,50.5\n"),
            run(),
            "line 4, column \"prey\": 50.5 is not a count",
        ),
        c(
            "declared network unknown species",
            edit(|j| {
                j.replace("preset = \"lotka-volterra\"\npredators = 1", "species = [\"prey\", \"pred1\"]\n[[model.reactions]]\nreactants = { prey = 1 }\nproducts = { fox = 2 }\nrate = \"birth\"")
            }),
            None,
            run(),
            "fox",
        ),
        c(
            "output is a file",
            None,
            None,
            vec!["run", "{job}", "--out", "{job}"],
            "not a directory",
        ),
        // Unwritable even for root: /proc refuses new directories.
        c(
            "unwritable output directory",
            None,
            None,
            vec!["run", "{job}", "--out", "/proc/pcmc-out", "--quiet"],
            "cannot create the output directory",
        ),
        c(
            "report of a non-run directory",
            None,
            None,
            vec!["report", "{dir}"],
            "not a run directory",
        ),
        c(
            "simulate without true values",
            None,
            None,
            vec!["simulate", "{job}"],
            "true",
        ),
        c(
            "check with missing data flag file",
            None,
            None,
            vec!["check", "{job}", "--data", "{dir}/missing.csv"],
            "missing.csv",
        ),
        c(
            "method: unknown",
            edit(|j| j.replace("seed = 1\n", "seed = 1\nmethod = \"mcmc\"\n")),
            None,
            run(),
            "method: \"mcmc\" is not one of pmmh, smc2",
        ),
        c(
            "--method: unknown",
            None,
            None,
            vec!["run", "{job}", "--out", "{dir}/out", "--quiet", "--method", "abc"],
            "--method",
        ),
        c(
            "smc2: one θ-particle",
            edit(|j| format!("{j}[smc2]\ntheta_particles = 1\n").replace("seed = 1\n", "seed = 1\nmethod = \"smc2\"\n")),
            None,
            run(),
            "smc2.theta_particles: 1 is not in 2..=2^24",
        ),
        c(
            "smc2: unknown proposal",
            edit(|j| format!("{j}[smc2]\nproposal = \"langevin\"\n").replace("seed = 1\n", "seed = 1\nmethod = \"smc2\"\n")),
            None,
            run(),
            "smc2.proposal: \"langevin\"",
        ),
        c(
            "smc2: threshold above 1",
            edit(|j| format!("{j}[smc2]\ness_threshold = 1.5\n").replace("seed = 1\n", "seed = 1\nmethod = \"smc2\"\n")),
            None,
            run(),
            "smc2.ess_threshold: 1.5 is not in (0, 1]",
        ),
        c(
            "smc2: no moves",
            edit(|j| format!("{j}[smc2]\nmoves = 0\n").replace("seed = 1\n", "seed = 1\nmethod = \"smc2\"\n")),
            None,
            run(),
            "smc2.moves: 0 is not in 1..=255",
        ),
        c(
            "smc2: exchange threshold 1",
            edit(|j| format!("{j}[smc2]\nexchange_below = 1.0\n").replace("seed = 1\n", "seed = 1\nmethod = \"smc2\"\n")),
            None,
            run(),
            "smc2.exchange_below: 1 is not in (0, 1)",
        ),
        c(
            "smc2: particle cap below the start",
            edit(|j| format!("{j}[smc2]\nparticles = 100\nmax_particles = 50\n").replace("seed = 1\n", "seed = 1\nmethod = \"smc2\"\n")),
            None,
            run(),
            "smc2.max_particles: 50 is below smc2.particles (100)",
        ),
        c(
            "smc2: check validates the table",
            edit(|j| format!("{j}[smc2]\nmoves = 300\n").replace("seed = 1\n", "seed = 1\nmethod = \"smc2\"\n")),
            None,
            vec!["check", "{job}"],
            "smc2.moves: 300 is not in 1..=255",
        ),
        c(
            "smc2: unknown field",
            edit(|j| format!("{j}[smc2]\nthetas = 5\n")),
            None,
            run(),
            "unknown field `thetas`",
        ),
        c(
            "smc2: a scheduler for the rayon executor",
            None,
            None,
            vec!["run", "{job}", "--out", "{dir}/out", "--quiet", "--method", "smc2", "--scheduler", "df://127.0.0.1:1"],
            "command line (--scheduler): a Ballista scheduler runs the dataflow executor's jobs; use it with --executor dataflow, not rayon",
        ),
        c(
            "smc2: zero partitions",
            None,
            None,
            vec!["run", "{job}", "--out", "{dir}/out", "--quiet", "--method", "smc2", "--partitions", "0"],
            "invalid value '0' for '--partitions <PARTITIONS>'",
        ),
        c(
            "smc2: a work directory without a scheduler",
            None,
            None,
            vec!["run", "{job}", "--out", "{dir}/out", "--quiet", "--method", "smc2", "--work-dir", "{dir}/w"],
            "command line (--work-dir): applies to runs on a Ballista cluster (--scheduler) only",
        ),
        c(
            "smc2: --chains",
            None,
            None,
            vec!["run", "{job}", "--out", "{dir}/out", "--quiet", "--method", "smc2", "--chains", "2"],
            "command line (--chains): does not apply to method smc2",
        ),
        c(
            "--theta-particles with PMMH",
            None,
            None,
            vec!["run", "{job}", "--out", "{dir}/out", "--quiet", "--theta-particles", "10"],
            "command line (--theta-particles): applies to method smc2 only",
        ),
        c(
            "--replicates with PMMH",
            None,
            None,
            vec!["run", "{job}", "--out", "{dir}/out", "--quiet", "--replicates", "4"],
            "command line (--replicates): applies to method smc2 only",
        ),
        c(
            "smc2: no replicates",
            edit(|j| format!("{j}[smc2]\nreplicates = 0\n").replace("seed = 1\n", "seed = 1\nmethod = \"smc2\"\n")),
            None,
            run(),
            "smc2.replicates: 0 is not in 1..=1000",
        ),
        c(
            "smc2: --replicates 0",
            None,
            None,
            vec!["run", "{job}", "--out", "{dir}/out", "--quiet", "--method", "smc2", "--replicates", "0"],
            "invalid value '0' for '--replicates <REPLICATES>'",
        ),
        c(
            "compare-models: one run",
            None,
            None,
            vec!["compare-models", "{dir}"],
            "at least two run directories",
        ),
        c(
            "compare-models: not run directories",
            None,
            None,
            vec!["compare-models", "{dir}", "{dir}/nothing"],
            "summary.json: cannot read",
        ),
        c(
            "initial time after data",
            edit(|j| j.replace("means = {", "time = 5.0\nmeans = {")),
            None,
            run(),
            "initial.time",
        ),
        // Values of the wrong shape name the field as written, the value
        // found and what is allowed (not serde's "untagged enum").
        c(
            "negative particle count",
            edit(|j| j.replace("particles = 16", "particles = -5")),
            None,
            run(),
            "filter.particles: && -5 is not allowed && a whole number of particles",
        ),
        c(
            "fractional particle count",
            edit(|j| j.replace("particles = 16", "particles = 100.5")),
            None,
            run(),
            "filter.particles: && 100.5 is not allowed",
        ),
        c(
            "sd as a string",
            edit(|j| j.replace("sd = 10.0", "sd = \"10\"")),
            None,
            run(),
            "observation.sd: && the string \"10\" is not allowed && expected a number",
        ),
        c(
            "negative cap",
            edit(|j| j.replace("particles = 16", "particles = 16\ncap = { prey = -1 }")),
            None,
            run(),
            "filter.cap: && -1 for species \"prey\" is not allowed && a whole number",
        ),
        c(
            "simulate times of the wrong shape",
            edit(|j| format!("{j}[simulate]\ntimes = \"often\"\n")),
            None,
            vec!["simulate", "{job}"],
            "simulate.times: && the string \"often\" is not allowed",
        ),
        c(
            "empty job file",
            edit(|_| String::new()),
            None,
            run(),
            "[model], [observation], [initial], [parameters]: missing",
        ),
        c(
            "job without parameters",
            edit(|j| j.split("[parameters.birth]").next().unwrap().to_string()),
            None,
            run(),
            "[parameters]: missing",
        ),
        c(
            "extend without resume",
            None,
            None,
            vec!["run", "{job}", "--out", "{dir}/out", "--extend", "--iterations", "9"],
            "--extend && goes with --resume",
        ),
        c(
            "force with resume",
            None,
            None,
            vec!["run", "{job}", "--out", "{dir}/out", "--force", "--resume"],
            "--force && contradicts --resume",
        ),
        c(
            "report of a directory that is no run",
            None,
            None,
            vec!["report", "{dir}"],
            "not a run directory of pcmc run (PMMH) && run.json is missing",
        ),
    ]);
    // Models and data (issue #29): [observables], noise parameters,
    // incidence, initial counts, covariates, several data sets.
    const OBS: &str = "[observation]\nmodel = \"gaussian\"\nsd = 10.0\n";
    let obs = |table: &'static str| edit(move |j: &str| j.replace(OBS, table));
    for (name, table, expect) in [
        (
            "an unknown noise model",
            "[observables.prey]\nnoise = \"gamma\"\n",
            "observables.prey.noise: \"gamma\" is not one of",
        ),
        (
            "gaussian noise without sd",
            "[observables.prey]\nnoise = \"gaussian\"\n",
            "observables.prey.sd: required for gaussian noise",
        ),
        (
            "a field the noise does not use",
            "[observables.prey]\nnoise = \"poisson\"\nsd = 2.0\n",
            "observables.prey.sd: not used by poisson noise",
        ),
        (
            "both k and phi",
            "[observables.prey]\nnoise = \"negative-binomial\"\nk = 2.0\nphi = 0.5\n",
            "give k or phi",
        ),
        (
            "a noise parameter named like a rate",
            "[observables.prey]\nnoise = \"gaussian\"\nsd = \"birth\"\n",
            "observables.prey.sd: \"birth\" is a rate parameter",
        ),
        (
            "a noise parameter without a prior",
            "[observables.prey]\nnoise = \"gaussian\"\nsd = \"sigma\"\n",
            "parameters.sigma: missing",
        ),
        (
            "a binomial rho above 1",
            "[observables.prey]\nnoise = \"binomial\"\nrho = 1.5\n",
            "observables.prey.rho: 1.5 is not a probability in (0, 1]",
        ),
        (
            "a sum naming no species",
            "[observables.prey]\nof = \"prey + wolf\"\nnoise = \"poisson\"\n",
            "observables.prey.of && \"wolf\" is not a species",
        ),
        (
            "a zero coefficient",
            "[observables.prey]\nof = \"0*prey\"\nnoise = \"poisson\"\n",
            "observables.prey.of && not a whole coefficient",
        ),
        (
            "incidence of no reaction",
            "[observables.prey]\nincidence = \"eating\"\nnoise = \"poisson\"\n",
            "observables.prey.incidence: \"eating\" is not a reaction",
        ),
        (
            "both of and incidence",
            "[observables.prey]\nof = \"prey\"\nincidence = \"birth\"\nnoise = \"poisson\"\n",
            "not both",
        ),
        (
            "a column named time",
            "[observables.time]\nof = \"prey\"\nnoise = \"poisson\"\n",
            "observables.time",
        ),
        (
            "a data column that is not an observable",
            "[observables.pred1]\nnoise = \"poisson\"\n",
            "\"prey\" is not an observable of the job",
        ),
        (
            "both [observation] and [observables]",
            "[observation]\nmodel = \"poisson\"\n[observables.prey]\nnoise = \"poisson\"\n",
            "not both",
        ),
    ] {
        all.push(c(name, obs(table), None, run(), expect));
    }
    all.push(c(
        "log-normal noise with a zero datum",
        obs("[observables.prey]\nnoise = \"log-normal\"\nsd = 0.5\n"),
        Some(b"time,prey\n0,50\n2,0\n"),
        run(),
        "line 3, column \"prey\": 0 is not positive",
    ));
    all.push(c(
        "a fixed count and a mean for one species",
        edit(|j: &str| {
            j.replace(
                "means = { prey = 50, pred1 = 100 }",
                "means = { prey = 50, pred1 = 100 }\ncounts = { prey = 50 }",
            )
        }),
        None,
        run(),
        "initial.counts: \"prey\" also has a mean",
    ));
    all.push(c(
        "a covariate file no rate uses",
        edit(|j: &str| j.replace("[observation]", "covariates = \"cov.csv\"\n[observation]")),
        None,
        run(),
        "data.covariates: no reaction rate uses a covariate",
    ));
    // Initial counts given by parameters.
    let count = |expr: &'static str| {
        edit(move |j: &str| {
            j.replace(
                "means = { prey = 50, pred1 = 100 }",
                &format!("means = {{ pred1 = 100 }}\ncounts = {{ prey = {expr} }}"),
            )
        })
    };
    all.push(c(
        "an initial count that is not a sum of terms",
        count("\"N I0\""),
        None,
        run(),
        "initial.counts.prey: \"N I0\" is not a sum of terms",
    ));
    all.push(c(
        "an initial count adding and subtracting one parameter",
        count("\"N - N\""),
        None,
        run(),
        "initial.counts.prey: \"N - N\" adds and subtracts the same parameter",
    ));
    all.push(c(
        "an initial count with two parameters added",
        count("\"N + M\""),
        None,
        run(),
        "adds or subtracts more than one parameter",
    ));
    all.push(c(
        "an initial count with no parameter",
        count("\"40 + 2\""),
        None,
        run(),
        "names no parameter",
    ));
    all.push(c(
        "an initial count named like a rate",
        count("\"birth\""),
        None,
        run(),
        "\"birth\" is already a rate or noise parameter",
    ));
    all.push(c(
        "an initial-count parameter without a prior",
        count("\"N0\""),
        None,
        run(),
        "parameters.N0: missing",
    ));
    all.push(c(
        "an initial count that is negative at the start",
        edit(|j: &str| {
            j.replace(
                "means = { prey = 50, pred1 = 100 }",
                "means = { pred1 = 100 }\ncounts = { prey = \"10 - N0\" }",
            ) + "[parameters.N0]\nprior = { dist = \"uniform\", lower = 20.0, upper = 30.0 }\n"
        }),
        None,
        run(),
        "mcmc.init",
    ));
    // SBML models ([model] sbml).
    let sbml = |to: &'static str| {
        edit(move |j: &str| {
            j.replace(
                "preset = \"lotka-volterra\"\npredators = 1",
                &format!("sbml = \"{to}\""),
            )
        })
    };
    all.push(c(
        "sbml and a preset together",
        edit(|j: &str| j.replace("preset = ", "sbml = \"m.xml\"\npreset = ")),
        None,
        run(),
        "model.sbml: give either `sbml` or `preset`",
    ));
    all.push(c(
        "an SBML file that does not exist",
        sbml("missing.xml"),
        None,
        run(),
        "model.sbml: cannot read && missing.xml",
    ));
    all.push(c(
        "an SBML path that is a directory",
        sbml("."),
        None,
        run(),
        "is not a regular file",
    ));
    all.push(c(
        "an SBML file that is not XML",
        sbml("data.csv"),
        None,
        run(),
        "data.csv: line 1: <xml>: not well-formed XML",
    ));
    all.push(c(
        "an SBML model with a rule",
        sbml("data.csv"),
        Some(
            br#"<sbml level="3" version="1"><model id="m">
<listOfCompartments><compartment id="c" size="1" constant="true"/></listOfCompartments>
<listOfSpecies><species id="X" compartment="c" initialAmount="5" hasOnlySubstanceUnits="true" boundaryCondition="false" constant="false"/></listOfSpecies>
<listOfRules>
  <rateRule id="grow" variable="X"/>
</listOfRules>
</model></sbml>"#,
        ),
        run(),
        "data.csv: line 5: <rateRule id=\"grow\">: rules (assignment, rate, algebraic) are not supported",
    ));
    all.push(c(
        "--data for a job with several data sets",
        edit(|j: &str| {
            let path = j
                .lines()
                .find(|l| l.starts_with("path = "))
                .unwrap()
                .to_string();
            j.replace("[data]", &format!("[[data]]\n{path}\n[[data]]"))
        }),
        None,
        vec![
            "run",
            "{job}",
            "--out",
            "{dir}/out",
            "--quiet",
            "--data",
            "{dir}/x.csv",
        ],
        "(--data): the job has 2 data sets",
    ));
    all
}

#[test]
fn bad_inputs_exit_2_with_a_clear_message() {
    let all = cases();
    assert!(all.len() >= 40, "the corpus has {} cases", all.len());
    let mut failures = Vec::new();
    for case in all {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("bad");
        std::fs::create_dir(&dir).unwrap();
        let data = dir.join("data.csv");
        std::fs::write(&data, case.data.unwrap_or(DATA.as_bytes())).unwrap();
        let job: PathBuf = dir.join("job.toml");
        let base = base_job(&data);
        let text = case.job.as_ref().map_or(base.clone(), |f| f(&base));
        std::fs::write(&job, text).unwrap();
        let args: Vec<String> = case
            .args
            .iter()
            .map(|a| {
                a.replace("{job}", &job.display().to_string())
                    .replace("{dir}", &dir.display().to_string())
            })
            .collect();
        // `--env KEY=VALUE` (test-only) sets an environment variable.
        let mut cmd = pcmc();
        let mut rest = Vec::new();
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            if a == "--env" {
                let kv = it.next().unwrap();
                let (k, v) = kv.split_once('=').unwrap();
                cmd.env(k, v);
            } else {
                rest.push(a);
            }
        }
        let out = cmd.args(&rest).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(2)
            || stderr.contains("panicked")
            || !case.expect.split(" && ").all(|e| stderr.contains(e))
        {
            failures.push(format!(
                "{}: status {:?}, expected {:?} in:\n{stderr}",
                case.name, out.status, case.expect
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn read_only_output_directory_is_refused() {
    // Root ignores permissions; only meaningful for ordinary users.
    let tmp = tempfile::tempdir().unwrap();
    let ro = tmp.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    let mut perm = std::fs::metadata(&ro).unwrap().permissions();
    perm.set_readonly(true);
    std::fs::set_permissions(&ro, perm).unwrap();
    if std::fs::write(ro.join("probe"), b"x").is_ok() {
        return; // running as root: the directory is writable anyway
    }
    let data = tmp.path().join("data.csv");
    std::fs::write(&data, DATA).unwrap();
    let job = tmp.path().join("job.toml");
    std::fs::write(&job, base_job(&data)).unwrap();
    let out = pcmc()
        .arg("run")
        .arg(&job)
        .arg("--out")
        .arg(ro.join("x"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// `merge` and `report` say what they accept: `merge` refuses an SMC²
/// directory naming the method and what to use instead, and runs that
/// differ in their iterations naming the setting and both values; `report`
/// reads both methods' directories and names what it needs otherwise.
#[test]
fn merge_and_report_name_what_they_accept() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data.csv");
    std::fs::write(&data, DATA).unwrap();
    let job = tmp.path().join("job.toml");
    std::fs::write(&job, base_job(&data)).unwrap();
    let run = |out: &str, flags: &[&str]| {
        let o = pcmc()
            .arg("run")
            .arg(&job)
            .arg("--out")
            .arg(tmp.path().join(out))
            .arg("--quiet")
            .args(flags)
            .output()
            .unwrap();
        // An SMC² run this small may finish with an evidence it calls not
        // usable (exit 3): it is still an SMC² run directory.
        if o.status.code() != Some(3) {
            common::ok(&o);
        }
    };
    run("a", &["--chains", "1"]);
    run(
        "b",
        &["--chains", "1", "--first-chain", "1", "--iterations", "3"],
    );
    run(
        "s",
        &[
            "--method",
            "smc2",
            "--theta-particles",
            "4",
            "--particles",
            "4",
        ],
    );
    let p = |d: &str| tmp.path().join(d);
    let expect = |args: Vec<std::ffi::OsString>, fragments: &[&str]| {
        let o = pcmc().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        for f in fragments {
            assert!(err.contains(f), "{f:?} not in {err}");
        }
    };
    expect(
        vec!["merge".into(), p("m").into(), p("a").into(), p("b").into()],
        &["cannot merge: iterations is 3 here but 2 in"],
    );
    expect(
        vec!["merge".into(), p("m2").into(), p("a").into(), p("s").into()],
        &["is an SMC² run directory", "compare-models"],
    );
    // report reads SMC² directories too (their final checkpoint).
    let o = pcmc()
        .arg("report")
        .arg(p("s"))
        .arg("--quiet")
        .output()
        .unwrap();
    common::ok(&o);
    // A directory that is neither: report says what it reads.
    std::fs::create_dir_all(p("empty")).unwrap();
    expect(
        vec!["report".into(), p("empty").into()],
        &[
            "not a run directory of pcmc run (PMMH)",
            "job.toml is missing",
        ],
    );
}
