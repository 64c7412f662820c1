//! End-to-end tests of the `pcmc` binary on the quick jobs.
mod common;

use common::{job, ok, pcmc};
use pcmc_cli::output::{read_chain_csv, read_chain_parquet};
use std::path::{Path, PathBuf};
use std::process::Output;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run_quick(job_name: &str, dir: &Path, extra: &[&str]) -> Output {
    let out = pcmc()
        .arg("run")
        .arg(job(job_name))
        .arg("--out")
        .arg(dir)
        .args(extra)
        .output()
        .unwrap();
    ok(&out);
    out
}

#[test]
fn run_outputs_agree_and_report_reproduces_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let out = run_quick("lv11-quick.toml", &dir, &["--threads", "2"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("predation1") && table.contains("R-hat"),
        "{table}"
    );
    for f in [
        "chain.csv",
        "chain.parquet",
        "summary.json",
        "trace.svg",
        "density.svg",
        "predictive.svg",
        "run.json",
        "job.toml",
        "data.csv",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let (names, csv_rows) = read_chain_csv(&dir.join("chain.csv")).unwrap();
    assert_eq!(names, ["birth", "predation1", "death1"]);
    // 2 chains × 20 kept iterations.
    assert_eq!(csv_rows.len(), 40);
    let pq_rows = read_chain_parquet(&dir.join("chain.parquet")).unwrap();
    assert_eq!(csv_rows, pq_rows, "CSV and Parquet differ");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    for (p, name) in names.iter().enumerate() {
        let mean = csv_rows.iter().map(|r| r.theta[p]).sum::<f64>() / csv_rows.len() as f64;
        let s = summary["parameters"][name]["mean"].as_f64().unwrap();
        assert!(
            (s - mean).abs() <= 1e-12 * mean.abs(),
            "{name}: {s} vs {mean}"
        );
        assert!(summary["parameters"][name]["true"].as_f64().is_some());
    }
    for key in [
        "acceptance_rate",
        "wall_seconds",
        "ssa_events",
        "events_per_second",
        "job_fingerprint",
        "executor",
        "workers",
        "stages",
        "pcmc_version",
    ] {
        assert!(!summary[key].is_null(), "summary lacks {key}");
    }
    assert_eq!(summary["workers"], 2);
    assert!(summary["ssa_events"].as_u64().unwrap() > 0);
    let svg = std::fs::read_to_string(dir.join("trace.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("polyline"));

    // report recomputes the same posterior summary and a readable Parquet file.
    std::fs::remove_file(dir.join("chain.parquet")).unwrap();
    std::fs::remove_file(dir.join("trace.svg")).unwrap();
    let out = pcmc().arg("report").arg(&dir).output().unwrap();
    ok(&out);
    let again: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(again["parameters"], summary["parameters"]);
    assert_eq!(again["wall_seconds"], summary["wall_seconds"]);
    assert_eq!(
        read_chain_parquet(&dir.join("chain.parquet")).unwrap(),
        csv_rows
    );
    assert!(dir.join("trace.svg").is_file());
}

/// A job with two data sets, covariates, incidence and a noise parameter:
/// the run directory keeps a copy of every input (data.csv, data-2.csv,
/// covariates.csv, covariates-2.csv), `pcmc report` rebuilds the summary
/// and the predictive plot from them byte for byte, `pcmc merge` carries
/// them, and summary.json marks the noise parameter.
#[test]
fn a_run_with_two_data_sets_and_covariates_reports_from_its_copies() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sir");
    run_quick("sir-incidence-quick.toml", &dir, &["--quiet"]);
    for (copy, shipped) in [
        ("data.csv", "sir-incidence.csv"),
        ("data-2.csv", "sir-incidence-b.csv"),
        ("covariates.csv", "sir-school.csv"),
        ("covariates-2.csv", "sir-school-b.csv"),
    ] {
        assert_eq!(
            std::fs::read(dir.join(copy)).unwrap(),
            std::fs::read(root().join("data").join(shipped)).unwrap(),
            "{copy}"
        );
    }
    let summary = std::fs::read(dir.join("summary.json")).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&summary).unwrap();
    assert_eq!(v["parameters"]["k"]["kind"], "observation");
    assert_eq!(v["parameters"]["beta"]["kind"], "rate");
    assert_eq!(v["observation_parameters"], serde_json::json!(["k"]));
    let predictive = std::fs::read(dir.join("predictive.svg")).unwrap();
    let text = String::from_utf8_lossy(&predictive);
    assert!(
        text.contains("data set 2") && text.contains("2 missing"),
        "predictive.svg"
    );
    std::fs::remove_file(dir.join("predictive.svg")).unwrap();
    ok(&pcmc()
        .arg("report")
        .arg(&dir)
        .arg("--quiet")
        .output()
        .unwrap());
    assert_eq!(std::fs::read(dir.join("summary.json")).unwrap(), summary);
    assert_eq!(
        std::fs::read(dir.join("predictive.svg")).unwrap(),
        predictive
    );
    // Two one-chain runs merge into the two-chain run, copies and all.
    let (a, b, m) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("m"),
    );
    run_quick(
        "sir-incidence-quick.toml",
        &a,
        &["--quiet", "--chains", "1"],
    );
    run_quick(
        "sir-incidence-quick.toml",
        &b,
        &["--quiet", "--chains", "1", "--first-chain", "1"],
    );
    ok(&pcmc()
        .arg("merge")
        .arg(&m)
        .arg(&a)
        .arg(&b)
        .arg("--quiet")
        .output()
        .unwrap());
    assert_eq!(
        std::fs::read(m.join("chain.csv")).unwrap(),
        std::fs::read(dir.join("chain.csv")).unwrap()
    );
    assert!(m.join("data-2.csv").is_file() && m.join("covariates-2.csv").is_file());
    // --force removes the copies with the rest of the old run.
    std::fs::write(dir.join("data-3.csv"), "stale").unwrap();
    run_quick("lv11-quick.toml", &dir, &["--quiet", "--force"]);
    assert!(!dir.join("data-2.csv").exists() && !dir.join("covariates.csv").exists());
}

#[test]
fn thread_count_does_not_change_the_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("t1");
    let b = tmp.path().join("t3");
    run_quick("lv11-quick.toml", &a, &["--threads", "1", "--quiet"]);
    run_quick("lv11-quick.toml", &b, &["--threads", "3", "--quiet"]);
    let ca = std::fs::read(a.join("chain.csv")).unwrap();
    assert_eq!(ca, std::fs::read(b.join("chain.csv")).unwrap());
    // Nor does the kernel, and summary.json says which one ran.
    for kernel in ["scalar", "batch", "simd"] {
        let k = tmp.path().join(kernel);
        run_quick("lv11-quick.toml", &k, &["--kernel", kernel, "--quiet"]);
        assert_eq!(ca, std::fs::read(k.join("chain.csv")).unwrap(), "{kernel}");
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(k.join("summary.json")).unwrap()).unwrap();
        let ran = v["kernel"].as_str().unwrap();
        assert!(
            ran == kernel || (kernel == "simd" && ran == "simd→batch"),
            "{ran}"
        );
    }
    // The serial reference executor agrees too, on a two-predator job.
    let c = tmp.path().join("s");
    let d = tmp.path().join("r3");
    run_quick(
        "lv12-quick.toml",
        &c,
        &["--executor", "serial", "--quiet", "--particles", "7"],
    );
    run_quick(
        "lv12-quick.toml",
        &d,
        &["--threads", "3", "--quiet", "--particles", "7"],
    );
    assert_eq!(
        std::fs::read(c.join("chain.csv")).unwrap(),
        std::fs::read(d.join("chain.csv")).unwrap()
    );
    // Incidence, a covariate breakpoint, missing values, negative-binomial
    // noise with its dispersion in θ, fixed initial counts: the serial
    // executor, 1 and 3 threads and every kernel give the same bytes.
    let job = "sir-incidence-quick.toml";
    let reference = tmp.path().join("sir-serial");
    run_quick(
        job,
        &reference,
        &["--executor", "serial", "--quiet", "--kernel", "scalar"],
    );
    let want = std::fs::read(reference.join("chain.csv")).unwrap();
    for (name, args) in [
        ("sir-t1", vec!["--threads", "1"]),
        ("sir-t3", vec!["--threads", "3"]),
        ("sir-batch", vec!["--kernel", "batch"]),
        ("sir-simd", vec!["--kernel", "simd"]),
    ] {
        let dir = tmp.path().join(name);
        let mut a = args.clone();
        a.push("--quiet");
        run_quick(job, &dir, &a);
        assert_eq!(
            want,
            std::fs::read(dir.join("chain.csv")).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn early_rejection_does_not_change_the_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let summary = |dir: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap()
    };
    for (job, extra) in [
        ("lv11-quick.toml", vec![]),
        ("lv12-quick.toml", vec!["--particles", "7"]),
        ("hare-lynx-quick.toml", vec![]),
        ("sir-incidence-quick.toml", vec![]),
        (
            "vilar2002-quick.toml",
            vec!["--iterations", "10", "--particles", "8"],
        ),
    ] {
        let full = tmp.path().join(format!("full-{job}"));
        let mut args = vec!["--quiet", "--no-early-rejection", "--threads", "2"];
        args.extend(&extra);
        run_quick(job, &full, &args);
        let reference = std::fs::read(full.join("chain.csv")).unwrap();
        let s = summary(&full);
        assert_eq!(s["early_rejection"]["enabled"], false);
        assert_eq!(s["early_rejection"]["passes_stopped"], 0);
        for (executor, threads) in [("serial", "1"), ("rayon", "1"), ("rayon", "3")] {
            let dir = tmp.path().join(format!("{executor}{threads}-{job}"));
            let mut args = vec!["--quiet", "--executor", executor, "--threads", threads];
            args.extend(&extra);
            run_quick(job, &dir, &args);
            assert_eq!(
                std::fs::read(dir.join("chain.csv")).unwrap(),
                reference,
                "{job} on {executor} × {threads}"
            );
            let s2 = summary(&dir);
            let er = &s2["early_rejection"];
            assert_eq!(er["enabled"], true);
            let stopped = er["passes_stopped"].as_u64().unwrap();
            assert!(stopped > 0, "{job}: {er}");
            assert!(er["events_saved_estimate"].as_u64().unwrap() > 0, "{er}");
            assert!(s2["ssa_events"].as_u64().unwrap() < s["ssa_events"].as_u64().unwrap());
            // Per-step load balance over the workers (threads here).
            let b = &s2["load_imbalance_per_step"];
            let workers: f64 = threads.parse().unwrap();
            assert!(b["steps"].as_u64().unwrap() > 0, "{b}");
            let (mean, max, weighted) = (
                b["mean"].as_f64().unwrap(),
                b["max"].as_f64().unwrap(),
                b["weighted"].as_f64().unwrap(),
            );
            assert!(1.0 <= mean && mean <= max && max <= workers + 1e-9, "{b}");
            assert!((1.0..=workers + 1e-9).contains(&weighted), "{b}");
            assert_eq!(s2["load_imbalance"].as_f64().unwrap(), weighted);
        }
    }
}

#[test]
fn simulate_reproduces_the_shipped_datasets() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["lv11", "lv12", "lv13"] {
        let out_path = tmp.path().join(format!("{name}.csv"));
        let out = pcmc()
            .arg("simulate")
            .arg(job(&format!("{name}.toml")))
            .arg("--out")
            .arg(&out_path)
            .output()
            .unwrap();
        ok(&out);
        let shipped = std::fs::read(root().join("data").join(format!("{name}.csv"))).unwrap();
        assert_eq!(
            std::fs::read(&out_path).unwrap(),
            shipped,
            "{name} does not regenerate byte for byte"
        );
    }
    // The SMC² model-choice examples' data.
    for (job_name, data) in [
        ("imdeath-smc2.toml", "imdeath.csv"),
        ("lv-choice-2.toml", "lv-choice.csv"),
        ("sir-incidence.toml", "sir-incidence.csv"),
    ] {
        let out = pcmc().arg("simulate").arg(job(job_name)).output().unwrap();
        ok(&out);
        assert_eq!(
            out.stdout,
            std::fs::read(root().join("data").join(data)).unwrap(),
            "{data} does not regenerate byte for byte"
        );
    }
    // The second school of sir-incidence: `--set 2`.
    let out = pcmc()
        .arg("simulate")
        .arg(job("sir-incidence.toml"))
        .args(["--set", "2"])
        .output()
        .unwrap();
    ok(&out);
    assert_eq!(
        out.stdout,
        std::fs::read(root().join("data/sir-incidence-b.csv")).unwrap(),
        "sir-incidence-b.csv does not regenerate byte for byte"
    );
    // Another seed gives other data.
    let out = pcmc()
        .arg("simulate")
        .arg(job("lv11.toml"))
        .args(["--seed", "5"])
        .output()
        .unwrap();
    ok(&out);
    assert_ne!(
        out.stdout,
        std::fs::read(root().join("data/lv11.csv")).unwrap()
    );
}

#[test]
fn check_accepts_every_shipped_job() {
    for entry in std::fs::read_dir(root().join("jobs")).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "toml") {
            let out = pcmc().arg("check").arg(&p).output().unwrap();
            ok(&out);
            assert!(String::from_utf8_lossy(&out.stdout).contains(": ok"));
        }
    }
}

#[test]
fn hare_lynx_quick_gives_a_finite_posterior_mean() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hl");
    run_quick("hare-lynx-quick.toml", &dir, &["--quiet"]);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    for p in ["a", "b", "c", "d"] {
        let m = summary["parameters"][p]["mean"].as_f64().unwrap();
        assert!(m.is_finite() && m > 0.0, "{p}: {m}");
    }
}

/// The hare–lynx jobs declare exactly the network the kernels have written
/// out (`Network::predation_birth`), so they run the fast paths: a change to
/// either side that breaks the match shows here, not as a silent slowdown.
#[test]
fn hare_lynx_jobs_declare_the_predation_birth_network() {
    for name in ["hare-lynx.toml", "hare-lynx-quick.toml"] {
        let j = pcmc_cli::job::Job::load(&root().join("jobs").join(name)).unwrap();
        assert_eq!(
            j.network,
            pcmc_core::model::Network::predation_birth(),
            "{name}"
        );
    }
}

#[test]
fn bench_ssa_kernels_simulate_the_same_events() {
    let mut events = Vec::new();
    for kernel in ["scalar", "batch", "simd"] {
        let out = pcmc()
            .args([
                "bench",
                "ssa",
                "--model",
                "lv11",
                "--trajectories",
                "40",
                "--kernel",
                kernel,
            ])
            .output()
            .unwrap();
        ok(&out);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["model"], "lv11");
        assert!(v["events_per_second"].as_f64().unwrap() > 0.0);
        // The C-like reference loop ran on as many trajectories of the same
        // model: about as many events (other streams), and a ratio.
        let r = v["reference_loop"]["events"].as_u64().unwrap() as f64;
        let e = v["events"].as_u64().unwrap() as f64;
        assert!((r / e - 1.0).abs() < 0.3, "{v}");
        assert!(v["ratio_to_reference_loop"].as_f64().unwrap() > 0.0);
        events.push(v["events"].as_u64().unwrap());
    }
    assert_eq!(events[0], events[1]);
    assert_eq!(events[0], events[2]);
    // About 10^4 events per lv11 trajectory, as DESIGN.md says.
    let per = events[0] as f64 / 40.0;
    assert!((3e3..3e4).contains(&per), "{per} events per trajectory");
}

#[test]
fn tune_reports_sd_and_cost_per_particle_count() {
    let tmp = tempfile::tempdir().unwrap();
    let out = pcmc()
        .arg("tune")
        .arg(job("lv11-quick.toml"))
        .args(["--particles", "20,80", "--repeats", "5", "--out"])
        .arg(tmp.path())
        .output()
        .unwrap();
    ok(&out);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("tune.json")).unwrap())
            .unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let sds: Vec<Option<f64>> = rows.iter().map(|r| r["sd_loglik"].as_f64()).collect();
    // The recommendation is the smallest count with sd ≤ 1.2 (the target of
    // filter.particles = "auto"), if any.
    let expect = rows
        .iter()
        .zip(&sds)
        .find(|(_, sd)| sd.is_some_and(|s| s <= 1.2))
        .map(|(r, _)| r["particles"].clone());
    assert_eq!(
        v["recommended_particles"],
        expect.unwrap_or(serde_json::Value::Null)
    );
    assert!(tmp.path().join("tune.svg").is_file() && tmp.path().join("tune.csv").is_file());
}

#[test]
fn bench_compare_runs_every_compiled_executor_and_checks_the_chains() {
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("bench");
    let mut executors = vec!["rayon"];
    if cfg!(feature = "mpi") {
        executors.push("mpi");
    }
    if cfg!(feature = "dataflow") {
        executors.push("dataflow");
    }
    let list = executors.join(",");
    let out = pcmc()
        .args(["bench", "compare"])
        .arg(job("lv11-quick.toml"))
        .args([
            "--executors",
            &list,
            "--workers",
            "1,2",
            "--repeat",
            "1",
            "--out",
        ])
        .arg(&out_dir)
        .args(["--", "--iterations", "6", "--chains", "1"])
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env_remove("SLURM_JOB_ID")
        .output()
        .unwrap();
    ok(&out);
    let md = std::fs::read_to_string(out_dir.join("bench.md")).unwrap();
    assert!(md.contains("Chains of all runs identical: yes"), "{md}");
    for e in &executors {
        for w in [1, 2] {
            assert!(md.contains(&format!("| {e} | {w} |")), "{e} × {w}:\n{md}");
        }
    }
    let csv = std::fs::read_to_string(out_dir.join("bench.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 2 * executors.len(), "{csv}");
    assert!(csv.starts_with("executor,workers,repeat,wall_seconds"));
    // Peak RSS comes from the OS: a run of pcmc needs at least a megabyte.
    for line in csv.lines().skip(1) {
        let rss: f64 = line.split(',').nth(7).unwrap().parse().unwrap();
        assert!(rss > 1e6, "{line}");
    }
    let svg = std::fs::read_to_string(out_dir.join("bench.svg")).unwrap();
    assert!(svg.starts_with("<svg"));
    // An executor that does not exist is bad input.
    let bad = pcmc()
        .args(["bench", "compare"])
        .arg(job("lv11-quick.toml"))
        .args(["--executors", "spark"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("\"spark\" is not one of"));
}

#[test]
fn a_locked_run_directory_is_refused_naming_its_holder_and_report_and_merge_respect_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    ok(&pcmc()
        .args(["run"])
        .arg(job("lv11-quick.toml"))
        .arg("--out")
        .arg(&dir)
        .args(["--quiet", "--iterations", "2", "--chains", "1"])
        .output()
        .unwrap());
    let before = std::fs::read(dir.join("chain.csv")).unwrap();
    // This test process holds the directory, as a running pcmc would.
    let mut held = pcmc_cli::fsio::RunLock::acquire(&dir).unwrap();
    held.announce().unwrap();
    let me = format!("pid {}", std::process::id());
    for args in [
        vec![
            "run".to_string(),
            job("lv11-quick.toml").display().to_string(),
            "--out".into(),
            dir.display().to_string(),
            "--quiet".into(),
        ],
        vec!["report".into(), dir.display().to_string(), "--quiet".into()],
        vec![
            "merge".into(),
            dir.display().to_string(),
            dir.display().to_string(),
            "--quiet".into(),
        ],
    ] {
        let out = pcmc().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&me) && err.contains("in use"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(
        std::fs::read(dir.join("chain.csv")).unwrap(),
        before,
        "the locked directory changed"
    );
    drop(held);
    // Released: the directory is usable again.
    ok(&pcmc()
        .args(["report"])
        .arg(&dir)
        .arg("--quiet")
        .output()
        .unwrap());
}

/// The "complete example" of docs/jobs.md passes `pcmc check` as it stands
/// (with its data where its relative path points).
#[test]
fn the_complete_job_example_in_the_docs_passes_check() {
    let docs = std::fs::read_to_string(common::job("../docs/jobs.md")).unwrap();
    let from = docs.find("## Job files").unwrap();
    let start = from + docs[from..].find("```toml\n").unwrap() + "```toml\n".len();
    let end = start + docs[start..].find("```").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("jobs")).unwrap();
    std::fs::create_dir_all(tmp.path().join("data")).unwrap();
    std::fs::copy(
        common::job("../data/lv11.csv"),
        tmp.path().join("data/lv11.csv"),
    )
    .unwrap();
    let job = tmp.path().join("jobs/example.toml");
    std::fs::write(&job, &docs[start..end]).unwrap();
    let out = pcmc().arg("check").arg(&job).output().unwrap();
    common::ok(&out);
    // The observables example (incidence, a covariate, missing values, a
    // noise parameter) too.
    let from = docs.find("## Observables").unwrap();
    let start = from + docs[from..].find("```toml\n").unwrap() + "```toml\n".len();
    let end = start + docs[start..].find("```").unwrap();
    for f in [
        "sir-incidence.csv",
        "sir-incidence-b.csv",
        "sir-school.csv",
        "sir-school-b.csv",
    ] {
        std::fs::copy(
            common::job(&format!("../data/{f}")),
            tmp.path().join("data").join(f),
        )
        .unwrap();
    }
    let job = tmp.path().join("jobs/sir.toml");
    std::fs::write(&job, &docs[start..end]).unwrap();
    let out = pcmc().arg("check").arg(&job).output().unwrap();
    common::ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("beta, gamma, k"), "{text}");
}

/// An SBML job (vilar2002-quick): the run directory keeps a copy of the
/// model (`model.xml`) that `pcmc report` reads when the original is gone;
/// the same chain on 1 and 2 threads; `pcmc simulate` regenerates the
/// shipped data; a resume after the SBML file changed is refused, naming
/// the model's hash.
#[test]
fn an_sbml_job_runs_reports_from_its_copy_and_refuses_a_changed_model() {
    let tmp = tempfile::tempdir().unwrap();
    // The job and its model in a directory of their own.
    let jobs = tmp.path().join("jobs");
    std::fs::create_dir_all(&jobs).unwrap();
    let text = std::fs::read_to_string(job("vilar2002-quick.toml"))
        .unwrap()
        .replace(
            "../data/vilar2002.csv",
            &root().join("data/vilar2002.csv").display().to_string(),
        );
    let job_path = jobs.join("vilar2002-quick.toml");
    std::fs::write(&job_path, text).unwrap();
    let xml = std::fs::read(job("vilar2002.xml")).unwrap();
    std::fs::write(jobs.join("vilar2002.xml"), &xml).unwrap();
    let run = |dir: &Path, extra: &[&str]| {
        let out = pcmc()
            .arg("run")
            .arg(&job_path)
            .arg("--out")
            .arg(dir)
            .args(["--quiet", "--iterations", "12"])
            .args(extra)
            .output()
            .unwrap();
        ok(&out);
    };
    let (one, two) = (tmp.path().join("t1"), tmp.path().join("t2"));
    run(&one, &["--threads", "1"]);
    run(&two, &["--threads", "2"]);
    let chain = std::fs::read(one.join("chain.csv")).unwrap();
    assert_eq!(chain, std::fs::read(two.join("chain.csv")).unwrap());
    assert_eq!(std::fs::read(one.join("model.xml")).unwrap(), xml);
    // The report reads the copy.
    std::fs::write(jobs.join("vilar2002.xml"), "<not-sbml/>").unwrap();
    let summary = std::fs::read(one.join("summary.json")).unwrap();
    std::fs::remove_file(one.join("summary.json")).unwrap();
    ok(&pcmc()
        .arg("report")
        .arg(&one)
        .arg("--quiet")
        .output()
        .unwrap());
    assert_eq!(std::fs::read(one.join("summary.json")).unwrap(), summary);
    // A changed model (a rate in the file) refuses the resume.
    let changed = String::from_utf8(xml.clone()).unwrap().replace(
        r#"<parameter id="alphaA" value="50"/>"#,
        r#"<parameter id="alphaA" value="51"/>"#,
    );
    assert_ne!(changed.as_bytes(), xml.as_slice());
    std::fs::write(jobs.join("vilar2002.xml"), changed).unwrap();
    let out = pcmc()
        .arg("run")
        .arg(&job_path)
        .arg("--out")
        .arg(&one)
        .args(["--quiet", "--resume", "--extend", "--iterations", "20"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("model.sbml_sha256"), "{err}");
    // The shipped data regenerate.
    let out = pcmc()
        .arg("simulate")
        .arg(job("vilar2002.toml"))
        .output()
        .unwrap();
    ok(&out);
    assert_eq!(
        out.stdout,
        std::fs::read(root().join("data/vilar2002.csv")).unwrap()
    );
}

/// Inferred initial counts (sir-incidence-quick infers school A's `I0`,
/// with `S = "503 - I0"`): the chain is the same on 1 and 2 threads;
/// `summary.json` marks I0 as an initial count, the last entry of θ, its
/// draws inside the prior. (`pcmc simulate` of sir-incidence at I0's true
/// value 3 regenerates the data simulated from the fixed counts: see
/// `simulate_reproduces_the_shipped_datasets`.)
#[test]
fn inferred_initial_counts_run_like_fixed_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let job_path = job("sir-incidence-quick.toml");
    assert!(
        std::fs::read_to_string(&job_path)
            .unwrap()
            .contains("\"503 - I0\"")
    );
    let run = |dir: &Path, threads: &str| {
        ok(&pcmc()
            .arg("run")
            .arg(&job_path)
            .arg("--out")
            .arg(dir)
            .args(["--quiet", "--iterations", "15", "--threads", threads])
            .output()
            .unwrap());
    };
    let (one, two) = (tmp.path().join("t1"), tmp.path().join("t2"));
    run(&one, "1");
    run(&two, "2");
    assert_eq!(
        std::fs::read(one.join("chain.csv")).unwrap(),
        std::fs::read(two.join("chain.csv")).unwrap()
    );
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(one.join("summary.json")).unwrap()).unwrap();
    assert_eq!(v["parameters"]["I0"]["kind"], "initial");
    assert_eq!(v["initial_parameters"], serde_json::json!(["I0"]));
    assert_eq!(v["observation_parameters"], serde_json::json!(["k"]));
    let (names, rows) = read_chain_csv(&one.join("chain.csv")).unwrap();
    let i0 = names.iter().position(|n| n == "I0").unwrap();
    assert_eq!(i0, names.len() - 1, "initial counts come last in θ");
    assert!(rows.iter().all(|r| (0.5..12.5).contains(&r.theta[i0])));
}
