//! `pcmc run --method smc2` and `pcmc compare-models` end to end: the
//! outputs exist and agree with each other, the same job and seed give the
//! same bytes on every thread count and on the serial executor, and
//! `compare-models` ranks runs on the same data and refuses runs on other
//! data or of PMMH.
mod common;

use common::{job, ok, pcmc, smc2_job};
use std::path::Path;

/// `pcmc run JOB --out OUT EXTRA…`, as it ended.
fn run_output(job: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    pcmc()
        .arg("run")
        .arg(job)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

/// `pcmc run JOB --out OUT EXTRA…`, which must succeed.
fn run(job: &Path, out: &Path, extra: &[&str]) {
    assert!(
        !run_may_be_unusable(job, out, extra),
        "exit 3: evidence not usable"
    );
}

/// `pcmc run JOB --out OUT EXTRA…`, which must finish, perhaps saying its
/// evidence is not usable (exit 3, returned as true).
fn run_may_be_unusable(job: &Path, out: &Path, extra: &[&str]) -> bool {
    let o = run_output(job, out, extra);
    if o.status.code() == Some(3) {
        return true;
    }
    ok(&o);
    false
}

fn smc2(out: &Path, extra: &[&str]) {
    run(&smc2_job(out.parent().unwrap(), "lv11-smc2"), out, extra);
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn smc2_runs_write_consistent_outputs_and_the_same_bytes_on_any_thread_count() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("t1");
    smc2(&a, &["--threads", "1"]);
    for f in [
        "particles.csv",
        "particles.parquet",
        "summary.json",
        "run.json",
        "evidence.svg",
        "smc2.svg",
        "density.svg",
        "pairs.svg",
    ] {
        assert!(a.join(f).is_file(), "{f} missing");
    }
    let s = json(&a.join("summary.json"));
    assert_eq!(s["method"], "smc2");
    assert_eq!(s["theta_particles"], 32);
    assert_eq!(s["particles_start"], 30);
    let steps = s["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 16, "one record per observation");
    let log_z = s["log_evidence"].as_f64().unwrap();
    assert!(log_z.is_finite() && s["log_evidence_se"].as_f64().unwrap() >= 0.0);
    // The evidence is the sum of the increments (and exchange factors).
    let sum: f64 = steps
        .iter()
        .map(|r| {
            r["log_evidence_increment"].as_f64().unwrap()
                + r["exchange_log_increment"].as_f64().unwrap_or(0.0)
        })
        .sum();
    assert!((sum - log_z).abs() < 1e-9, "{sum} vs {log_z}");
    assert_eq!(
        s["resample_moves"].as_u64().unwrap(),
        steps.iter().filter(|r| r["resampled"] == true).count() as u64
    );
    // particles.csv: 32 rows whose weights sum to 1 and whose weighted mean
    // is the summary's.
    let text = std::fs::read_to_string(a.join("particles.csv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "replicate,particle,weight,log_weight,loglik,nx,birth,predation1,death1"
    );
    let rows: Vec<Vec<f64>> = lines
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 32);
    assert!(
        rows.iter()
            .enumerate()
            .all(|(i, r)| r[0] == 0.0 && r[1] == i as f64)
    );
    let wsum: f64 = rows.iter().map(|r| r[2]).sum();
    assert!((wsum - 1.0).abs() < 1e-12, "weights sum to {wsum}");
    let mean: f64 = rows.iter().map(|r| r[2] * r[6]).sum();
    let m = s["parameters"]["birth"]["mean"].as_f64().unwrap();
    assert!((mean - m).abs() < 1e-12 * m.abs(), "{mean} vs {m}");
    assert!(
        rows.iter()
            .all(|r| r[5] == s["particles_end"].as_f64().unwrap())
    );
    // The same bytes with 2 threads and on the serial executor.
    for (name, extra) in [
        ("t2", vec!["--threads", "2"]),
        ("serial", vec!["--executor", "serial"]),
        ("full", vec!["--no-early-rejection"]),
    ] {
        let b = tmp.path().join(name);
        smc2(&b, &extra);
        for f in ["particles.csv", "summary.json"] {
            assert_eq!(
                std::fs::read(a.join(f)).unwrap(),
                std::fs::read(b.join(f)).unwrap(),
                "{f} differs on {name}"
            );
        }
    }
}

#[test]
fn a_final_move_leaves_the_evidence_and_equal_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("plain");
    smc2(&plain, &[]);
    let job = smc2_job(tmp.path(), "lv11-smc2-final");
    let text = std::fs::read_to_string(&job).unwrap() + "final_move = true\n";
    std::fs::write(&job, text).unwrap();
    let fin = tmp.path().join("final");
    run(&job, &fin, &[]);
    let (a, b) = (
        json(&plain.join("summary.json")),
        json(&fin.join("summary.json")),
    );
    for k in [
        "log_evidence",
        "log_evidence_se",
        "eves",
        "effective_eves",
        "log_evidence_se_reliable",
        "steps",
        "resample_moves",
        // The weighted θ-ESS of the cloud the evidence ends with: before
        // the final move (after it every weight is equal).
        "theta_ess",
    ] {
        assert_eq!(a[k], b[k], "{k}");
    }
    assert!(a["final_move"].is_null());
    let f = &b["final_move"];
    assert_eq!(f["acceptance"].as_array().unwrap().len(), 3, "{f}");
    let distinct = f["distinct"].as_u64().unwrap();
    assert!((2..=32).contains(&distinct), "{f}");
    assert!((f["ess_before"].as_f64().unwrap() - b["theta_ess"].as_f64().unwrap()).abs() < 1e-9);
    let text = std::fs::read_to_string(fin.join("particles.csv")).unwrap();
    assert!(
        text.lines()
            .skip(1)
            .all(|l| l.split(',').nth(2) == Some("0.03125")),
        "weights are not all 1/32"
    );
    let log = std::fs::read_to_string(fin.join("run.json")).unwrap();
    assert!(log.contains("seconds"), "{log}");
}

#[test]
fn compare_models_ranks_runs_on_the_same_data_and_refuses_others() {
    let tmp = tempfile::tempdir().unwrap();
    // Two "models": the job, and the job with the prey birth rate's prior
    // moved away from the truth (a worse model of the same data).
    let good = smc2_job(tmp.path(), "good");
    let bad = smc2_job(tmp.path(), "bad");
    let text = std::fs::read_to_string(&bad).unwrap().replace(
        "prior = { dist = \"log-uniform\", lower = 0.67, upper = 1.5 }",
        "prior = { dist = \"log-uniform\", lower = 1.2, upper = 3.0 }",
    );
    std::fs::write(&bad, text.replace("init = 0.8", "init = 1.5")).unwrap();
    let (g, b) = (tmp.path().join("g"), tmp.path().join("b"));
    run(&good, &g, &["--quiet"]);
    // The bad model's prior excludes the truth: its cloud can collapse, and
    // the run then says its evidence is not usable (exit 3), which
    // compare-models repeats.
    let unusable = run_may_be_unusable(&bad, &b, &["--quiet"]);
    let o = pcmc()
        .arg("compare-models")
        .arg(&g)
        .arg(&b)
        .output()
        .unwrap();
    ok(&o);
    if unusable {
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("evidence is not usable"),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    let line = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} row in\n{table}"))
            .to_string()
    };
    // The good model is the best: its log Bayes factor is 0 and the bad
    // one's is negative.
    assert!(line("good").contains(" 0.000 ± 0.000"), "{table}");
    assert!(line("bad").contains(" -"), "{table}");
    // Both ran with the job's seed, but their streams are tagged by the
    // model: independent, no warning. The same model twice with one seed
    // draws the same numbers, and compare-models says so.
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("same random numbers"), "{err}");
    let (sg, sb) = (json(&g.join("summary.json")), json(&b.join("summary.json")));
    assert_eq!(sg["seed"], sb["seed"]);
    assert_ne!(sg["stream_tag"], sb["stream_tag"]);
    let g2 = tmp.path().join("g2");
    run(&good, &g2, &["--quiet"]);
    let o = pcmc()
        .arg("compare-models")
        .arg(&g)
        .arg(&g2)
        .output()
        .unwrap();
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("drew the same random numbers"), "{err}");
    // Prior weights are one per run.
    let o = pcmc()
        .arg("compare-models")
        .arg(&g)
        .arg(&b)
        .args(["--prior-weights", "1"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    // Other data: refused.
    let other = tmp.path().join("other.csv");
    let data = std::fs::read_to_string(job("../data/lv11.csv")).unwrap();
    let mut lines: Vec<&str> = data.lines().collect();
    lines.pop();
    std::fs::write(&other, lines.join("\n") + "\n").unwrap();
    let d = tmp.path().join("d");
    run(&good, &d, &["--quiet", "--data", other.to_str().unwrap()]);
    let o = pcmc()
        .arg("compare-models")
        .arg(&g)
        .arg(&d)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("data_fingerprint: these data differ"), "{err}");
    // A PMMH run: refused.
    let p = tmp.path().join("p");
    let o = pcmc()
        .arg("run")
        .arg(&good)
        .args(["--method", "pmmh", "--quiet", "--out"])
        .arg(&p)
        .output()
        .unwrap();
    ok(&o);
    let o = pcmc()
        .arg("compare-models")
        .arg(&g)
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not an SMC² run"));
}

/// The SMC² checkpoint's modification time (None while there is none).
fn checkpoint_mtime(dir: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(dir.join("smc2-checkpoint.json"))
        .and_then(|m| m.modified())
        .ok()
}

/// Runs the job in `dir` with `--resume` until it finishes, sending
/// `signal` after each new checkpoint plus a pseudo-random delay; returns
/// the number of signals that landed.
fn interrupt_until_done(job: &Path, dir: &Path, signal: &str, seed: u64) -> usize {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let mut x = seed;
    let mut landed = 0;
    for _ in 0..200 {
        let mut child = pcmc()
            .arg("run")
            .arg(job)
            .args(["--quiet", "--resume", "--out"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait for a checkpoint newer than the last one (or the end).
        let before = checkpoint_mtime(dir);
        let start = Instant::now();
        let mut running = true;
        while checkpoint_mtime(dir) == before {
            if child.try_wait().unwrap().is_some() {
                running = false;
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(180),
                "no checkpoint in 180 s"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        if running {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            std::thread::sleep(Duration::from_millis((x >> 33) % 150));
            let _ = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(child.id().to_string())
                .status();
        }
        let status = common::wait_child(&mut child, Duration::from_secs(300));
        match status.code() {
            Some(0) => return landed,
            Some(75) if signal == "TERM" => landed += 1,
            None if signal == "KILL" => landed += 1,
            other => panic!("unexpected exit {other:?} after SIG{signal}"),
        }
    }
    panic!("the run did not finish after 200 interruptions");
}

#[test]
fn an_interrupted_smc2_run_resumes_to_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let job = smc2_job(tmp.path(), "resume");
    let text = std::fs::read_to_string(&job)
        .unwrap()
        .replace("theta_particles = 32", "theta_particles = 160");
    std::fs::write(&job, text).unwrap();
    let reference = tmp.path().join("reference");
    let o = pcmc()
        .arg("run")
        .arg(&job)
        .args(["--quiet", "--out"])
        .arg(&reference)
        .output()
        .unwrap();
    ok(&o);
    for (signal, seed) in [("KILL", 7), ("TERM", 8)] {
        let dir = tmp.path().join(signal);
        let landed = interrupt_until_done(&job, &dir, signal, seed);
        eprintln!("{landed} SIG{signal}s landed");
        assert!(landed >= 3, "only {landed} SIG{signal}s landed");
        for f in ["particles.csv", "summary.json"] {
            assert_eq!(
                std::fs::read(reference.join(f)).unwrap(),
                std::fs::read(dir.join(f)).unwrap(),
                "{f} differs after {landed} SIG{signal}s"
            );
        }
    }
    // The checkpoint stays after the end: resuming a finished run rewrites
    // the same outputs; resuming with other settings is refused (exit 2).
    let dir = tmp.path().join("KILL");
    let o = pcmc()
        .arg("run")
        .arg(&job)
        .args(["--quiet", "--resume", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    ok(&o);
    assert_eq!(
        std::fs::read(reference.join("particles.csv")).unwrap(),
        std::fs::read(dir.join("particles.csv")).unwrap()
    );
    let o = pcmc()
        .arg("run")
        .arg(&job)
        .args(["--quiet", "--resume", "--theta-particles", "20", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--theta-particles") && err.contains("smc2.theta_particles = 160"),
        "{err}"
    );
}

/// A run's own standard error is flagged as unreliable when it rests on
/// few effective Eves (8 θ-particles), in summary.json, the warnings and the
/// printed line; with the job's 1000 θ-particles it is reliable.
#[test]
fn an_unreliable_standard_error_is_flagged() {
    let tmp = tempfile::tempdir().unwrap();
    let few = tmp.path().join("few");
    let o = run_output(&job("imdeath-smc2.toml"), &few, &["--theta-particles", "8"]);
    // So few θ-particles may also collapse (exit 3): the flag is what counts.
    assert!(
        matches!(o.status.code(), Some(0 | 3)),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let s = json(&few.join("summary.json"));
    assert_eq!(s["log_evidence_se_reliable"], false, "{s}");
    let eff = s["effective_eves"].as_f64().unwrap();
    assert!((1.0..10.0).contains(&eff), "{eff}");
    assert!(s["warnings"].to_string().contains("unreliable"), "{s}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("(unreliable: "));
    let many = tmp.path().join("many");
    run(&job("imdeath-smc2.toml"), &many, &["--quiet"]);
    let s = json(&many.join("summary.json"));
    assert_eq!(s["log_evidence_se_reliable"], true, "{s}");
    assert!(s["effective_eves"].as_f64().unwrap() >= 10.0, "{s}");
    assert_eq!(s["evidence_usable"], true, "{s}");
}

/// A run whose θ-particles collapse onto one (birth–death on immigration–
/// death data with 4 θ-particles: θ-ESS 1.65 at observation 7) writes its
/// outputs but says that its evidence is not usable: exit status 3, the
/// reason in summary.json and on standard error.
#[test]
fn a_collapsed_run_says_its_evidence_is_not_usable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("collapsed");
    let o = run_output(
        &job("birth-death-smc2.toml"),
        &dir,
        &["--theta-particles", "4", "--quiet"],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("evidence is not usable") && err.contains("collapsed"),
        "{err}"
    );
    let s = json(&dir.join("summary.json"));
    assert_eq!(s["evidence_usable"], false, "{s}");
    assert!(
        s["evidence_failures"][0]
            .as_str()
            .unwrap()
            .contains("θ-ESS"),
        "{s}"
    );
    assert!(dir.join("particles.csv").is_file());
}

/// `pcmc report` of an SMC² directory rebuilds its particles, summary and
/// plots from the final checkpoint, byte for byte, with the settings the
/// run was started with (here Nθ and the seed from the command line).
#[test]
fn report_rebuilds_an_smc2_directory_from_its_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let job = smc2_job(tmp.path(), "smc2-report");
    let dir = tmp.path().join("run");
    run(
        &job,
        &dir,
        &["--quiet", "--theta-particles", "20", "--seed", "9"],
    );
    let files = ["particles.csv", "particles.parquet", "summary.json"];
    let before: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(dir.join(f)).unwrap())
        .collect();
    for f in files.iter().chain(&["evidence.svg", "smc2.svg"]) {
        std::fs::remove_file(dir.join(f)).unwrap();
    }
    let o = pcmc().arg("report").arg(&dir).output().unwrap();
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains("log evidence"));
    for (f, b) in files.iter().zip(&before) {
        assert_eq!(&std::fs::read(dir.join(f)).unwrap(), b, "{f} differs");
    }
    assert!(dir.join("evidence.svg").is_file() && dir.join("smc2.svg").is_file());
}

/// `log` of the mean of `exp(xs)`.
fn log_mean_exp(xs: &[f64]) -> f64 {
    let m = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    m + (xs.iter().map(|x| (x - m).exp()).sum::<f64>() / xs.len() as f64).ln()
}

/// `--replicates 3`: replicate 0 is the run without replicates (the same
/// steps and evidence), the others draw other numbers; the evidence is the
/// log of the mean of their Ẑ; particles.csv holds the three clouds with
/// pooled weights (each replicate's total its Ẑ share); the bytes are the
/// same on 2 threads and on the serial executor; `report` rebuilds them;
/// a resumed run keeps the count, and contradicting it is refused.
#[test]
fn replicates_combine_independent_runs_into_one_evidence_and_posterior() {
    let tmp = tempfile::tempdir().unwrap();
    let job = smc2_job(tmp.path(), "reps");
    let one = tmp.path().join("one");
    run(&job, &one, &["--quiet"]);
    let three = tmp.path().join("three");
    let o = run_output(&job, &three, &["--replicates", "3"]);
    ok(&o);
    let printed = String::from_utf8_lossy(&o.stdout);
    assert!(
        printed.contains("× 3 replicates") && printed.contains("replicate 2:"),
        "{printed}"
    );
    let s1 = json(&one.join("summary.json"));
    let s = json(&three.join("summary.json"));
    assert_eq!(s["replicates"], 3);
    let runs = s["replicate_runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    assert_eq!(runs[0]["log_evidence"], s1["log_evidence"]);
    assert_eq!(runs[0]["steps"], s1["steps"]);
    let zs: Vec<f64> = runs
        .iter()
        .map(|r| r["log_evidence"].as_f64().unwrap())
        .collect();
    assert!(zs[0] != zs[1] && zs[1] != zs[2], "{zs:?}");
    let log_z = s["log_evidence"].as_f64().unwrap();
    assert!(
        (log_z - log_mean_exp(&zs)).abs() < 1e-12,
        "{log_z} vs {zs:?}"
    );
    assert!(s["log_evidence_se"].as_f64().unwrap() > 0.0);
    // Three replicates are too few to trust their spread.
    assert_eq!(s["log_evidence_se_reliable"], false, "{s}");
    assert!(s["warnings"].to_string().contains("too few"), "{s}");
    assert!(
        s["log_evidence_se_estimator"]
            .as_str()
            .unwrap()
            .starts_with("replicates")
    );
    let text = std::fs::read_to_string(three.join("particles.csv")).unwrap();
    let rows: Vec<Vec<f64>> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 96);
    for (r, run) in runs.iter().enumerate() {
        let share: f64 = rows.iter().filter(|x| x[0] == r as f64).map(|x| x[2]).sum();
        let w = run["weight"].as_f64().unwrap();
        assert!((share - w).abs() < 1e-12, "replicate {r}: {share} vs {w}");
        let want = (zs[r] - log_mean_exp(&zs)).exp() / 3.0;
        assert!(
            (w - want).abs() < 1e-12,
            "replicate {r}: weight {w} vs Ẑ share {want}"
        );
    }
    let mean: f64 = rows.iter().map(|r| r[2] * r[6]).sum();
    let m = s["parameters"]["birth"]["mean"].as_f64().unwrap();
    assert!((mean - m).abs() < 1e-12 * m.abs(), "{mean} vs {m}");
    for (name, extra) in [
        ("t2", vec!["--replicates", "3", "--threads", "2", "--quiet"]),
        (
            "serial",
            vec!["--replicates", "3", "--executor", "serial", "--quiet"],
        ),
    ] {
        let b = tmp.path().join(name);
        run(&job, &b, &extra);
        for f in ["particles.csv", "summary.json"] {
            assert_eq!(
                std::fs::read(three.join(f)).unwrap(),
                std::fs::read(b.join(f)).unwrap(),
                "{f} differs on {name}"
            );
        }
    }
    // report rebuilds the combined outputs.
    let before = std::fs::read(three.join("summary.json")).unwrap();
    std::fs::remove_file(three.join("summary.json")).unwrap();
    ok(&pcmc().arg("report").arg(&three).output().unwrap());
    assert_eq!(std::fs::read(three.join("summary.json")).unwrap(), before);
    // Resuming keeps the replicates; another count is refused.
    ok(&run_output(&job, &three, &["--quiet", "--resume"]));
    assert_eq!(std::fs::read(three.join("summary.json")).unwrap(), before);
    let o = run_output(&job, &three, &["--quiet", "--resume", "--replicates", "2"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("smc2.replicates = 3"), "{err}");
}

/// A run of several replicates stopped by signals (between and within
/// replicates) resumes to the bytes of an uninterrupted one.
#[test]
fn an_interrupted_run_of_replicates_resumes_to_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let job = smc2_job(tmp.path(), "reps-resume");
    let text = std::fs::read_to_string(&job).unwrap().replace(
        "theta_particles = 32",
        "theta_particles = 64\nreplicates = 3",
    );
    std::fs::write(&job, text).unwrap();
    let reference = tmp.path().join("reference");
    run(&job, &reference, &["--quiet"]);
    assert_eq!(json(&reference.join("summary.json"))["replicates"], 3);
    let dir = tmp.path().join("TERM");
    let landed = interrupt_until_done(&job, &dir, "TERM", 11);
    assert!(landed >= 3, "only {landed} SIGTERMs landed");
    for f in ["particles.csv", "summary.json"] {
        assert_eq!(
            std::fs::read(reference.join(f)).unwrap(),
            std::fs::read(dir.join(f)).unwrap(),
            "{f} differs after {landed} SIGTERMs"
        );
    }
}
