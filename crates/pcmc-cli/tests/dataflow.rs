//! The dataflow executor end to end: `chain.csv` byte-identical to rayon's
//! for lv11-quick (100 particles, 2 chains) and lv12-quick (20 particles,
//! two predators) at 1, 2, 3, 8 and 64 partitions; injected task failures
//! retried without changing a byte (and counted in `summary.json`); failures
//! beyond the retry bound ending the run with exit status 1 and a clear
//! message. Built with `--features dataflow`.
#![cfg(feature = "dataflow")]

mod common;

use common::{job, ok, pcmc};
use std::path::Path;
use std::process::{Command, Output};

fn run(dir: &Path, job_name: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = pcmc();
    c.arg("run")
        .arg(job(job_name))
        .arg("--out")
        .arg(dir)
        .arg("--quiet")
        .args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn chain(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("chain.csv")).unwrap()
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

#[test]
fn dataflow_chains_equal_rayon_at_1_2_3_8_64_partitions() {
    let tmp = tempfile::tempdir().unwrap();
    // lv11-auto-quick: the particle count adapted during burn-in (the
    // dataflow plans change with it).
    for job_name in ["lv11-quick.toml", "lv12-quick.toml", "lv11-auto-quick.toml"] {
        // The reference runs every filter pass to the end; the dataflow runs
        // stop hopeless passes early (the default).
        let rdir = tmp.path().join(format!("rayon-{job_name}"));
        ok(&run(
            &rdir,
            job_name,
            &["--threads", "2", "--no-early-rejection"],
            &[],
        ));
        let reference = chain(&rdir);
        let dir = tmp.path().join(format!("df-full-{job_name}"));
        ok(&run(
            &dir,
            job_name,
            &[
                "--executor",
                "dataflow",
                "--partitions",
                "3",
                "--no-early-rejection",
            ],
            &[],
        ));
        assert_eq!(chain(&dir), reference, "{job_name}: full passes");
        assert_eq!(summary(&dir)["early_rejection"]["passes_stopped"], 0);
        for parts in [1, 2, 3, 8, 64] {
            let dir = tmp.path().join(format!("df{parts}-{job_name}"));
            let p = parts.to_string();
            ok(&run(
                &dir,
                job_name,
                &[
                    "--executor",
                    "dataflow",
                    "--partitions",
                    &p,
                    "--threads",
                    "2",
                ],
                &[],
            ));
            assert_eq!(
                chain(&dir),
                reference,
                "{job_name}: dataflow with {parts} partitions differs from rayon"
            );
            let s = summary(&dir);
            assert!(
                s["early_rejection"]["passes_stopped"].as_u64().unwrap() > 0,
                "{s}"
            );
            assert_eq!(
                s["burn_in_checks"],
                summary(&rdir)["burn_in_checks"],
                "{job_name}: dataflow with {parts} partitions"
            );
            // Per-step load balance over the partitions' tasks.
            let b = &s["load_imbalance_per_step"];
            assert!(b["steps"].as_u64().unwrap() > 0, "{b}");
            let (mean, max) = (b["mean"].as_f64().unwrap(), b["max"].as_f64().unwrap());
            assert!(
                1.0 <= mean && mean <= max && max <= parts as f64 + 1e-9,
                "{b}"
            );
            assert_eq!(s["executor"], "dataflow");
            assert_eq!(s["workers"], parts);
            assert_eq!(s["task_retries"], 0);
            for stage in ["planning", "propagate", "reduce", "shuffle"] {
                assert!(
                    s["stages"][stage].as_f64().is_some_and(|x| x >= 0.0),
                    "stage {stage}: {}",
                    s["stages"]
                );
            }
            assert!(s["stages"]["propagate"].as_f64().unwrap() > 0.0);
            assert!(s["filter_steps"].as_u64().unwrap() > 0);
            if parts > 1 {
                assert!(s["rows_moved"].as_u64().unwrap() > 0, "{s}");
                assert!(s["bytes_moved_per_step"].as_f64().unwrap() > 0.0, "{s}");
            } else {
                assert_eq!(s["rows_moved"], 0);
            }
        }
    }
}

/// Incidence, a covariate breakpoint, missing values, a noise parameter
/// and an initial count in θ (sir-incidence-quick, one short chain: 40
/// steps per pass), and an SBML model (vilar2002-quick).
#[test]
fn dataflow_equals_rayon_on_the_sir_incidence_and_sbml_jobs() {
    for (job_name, iterations) in [
        ("sir-incidence-quick.toml", "40"),
        ("vilar2002-quick.toml", "6"),
    ] {
        dataflow_equals_rayon(job_name, iterations);
    }
}

fn dataflow_equals_rayon(job_name: &str, iterations: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let short = ["--chains", "1", "--iterations", iterations];
    let rdir = tmp.path().join("rayon");
    let mut args = vec!["--threads", "2", "--no-early-rejection"];
    args.extend(short);
    ok(&run(&rdir, job_name, &args, &[]));
    let reference = chain(&rdir);
    for parts in ["2", "8"] {
        let dir = tmp.path().join(format!("df{parts}"));
        let mut args = vec!["--executor", "dataflow", "--partitions", parts];
        args.extend(short);
        ok(&run(&dir, job_name, &args, &[]));
        assert_eq!(chain(&dir), reference, "{job_name} on {parts} partitions");
    }
}

#[test]
fn injected_failures_are_retried_without_changing_the_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let rdir = tmp.path().join("rayon");
    ok(&run(&rdir, "lv11-quick.toml", &[], &[]));
    let dir = tmp.path().join("faulty");
    let out = run(
        &dir,
        "lv11-quick.toml",
        &[
            "--executor",
            "dataflow",
            "--partitions",
            "3",
            "--threads",
            "2",
        ],
        &[
            ("PCMC_DATAFLOW_FAIL_RATE", "0.2"),
            ("PCMC_DATAFLOW_MAX_ATTEMPTS", "40"),
        ],
    );
    ok(&out);
    assert_eq!(chain(&dir), chain(&rdir));
    let s = summary(&dir);
    assert!(s["task_retries"].as_u64().unwrap() > 0, "{s}");
}

#[test]
fn failures_beyond_the_retry_bound_exit_1_with_a_message() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("doomed");
    let out = run(
        &dir,
        "lv11-quick.toml",
        &["--executor", "dataflow", "--partitions", "2"],
        &[
            ("PCMC_DATAFLOW_FAIL_RATE", "1"),
            ("PCMC_DATAFLOW_MAX_ATTEMPTS", "2"),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("failed 2 time(s)"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Interrupts a dataflow run with `signal` until five signals have landed
/// (resuming each time, on changing partition counts), then lets it finish;
/// returns the number of interruptions and the chain.
fn interrupt_and_resume(tmp: &Path, signal: &str) -> (usize, Vec<u8>) {
    let dir = tmp.join(format!("df-{signal}"));
    let mut interrupted = 0;
    let parts = ["3", "5", "2", "7", "4", "6"];
    for attempt in 0..24u64 {
        if interrupted >= 5 {
            break;
        }
        let p = parts[attempt as usize % parts.len()];
        let before = common::chain_lines(&dir);
        let mut child = pcmc()
            .arg("run")
            .arg(job("lv11-quick.toml"))
            .args(["--executor", "dataflow", "--partitions", p])
            .args(["--iterations", "300", "--checkpoint-every", "5"])
            .args(["--quiet", "--resume", "--out"])
            .arg(&dir)
            .spawn()
            .unwrap();
        // At pseudo-random moments after the run has made progress.
        let ms = (attempt * 7919 + 13) % 250;
        let extra = std::time::Duration::from_millis(ms);
        if !common::wait_for_progress(&mut child, &dir, before, extra) {
            continue;
        }
        let pid = child.id().to_string();
        assert!(
            Command::new("kill")
                .args([format!("-{signal}"), pid])
                .status()
                .unwrap()
                .success()
        );
        let status = child.wait().unwrap();
        match (signal, status.code()) {
            ("TERM", Some(75)) | ("KILL", None) => interrupted += 1,
            ("TERM", Some(0)) => {}
            _ => panic!("{signal}: unexpected {status:?}"),
        }
    }
    ok(&run(
        &dir,
        "lv11-quick.toml",
        &[
            "--executor",
            "dataflow",
            "--partitions",
            "4",
            "--iterations",
            "300",
            "--resume",
        ],
        &[],
    ));
    (interrupted, chain(&dir))
}

#[test]
fn dataflow_runs_killed_or_terminated_resume_bit_identically() {
    // SIGKILL (no checkpoint on the way out: resume from the last periodic
    // one) and SIGTERM (checkpoint, exit 75), five times each, resuming on
    // other partition counts: the chain equals an uninterrupted rayon run.
    let tmp = tempfile::tempdir().unwrap();
    let rdir = tmp.path().join("rayon");
    ok(&run(
        &rdir,
        "lv11-quick.toml",
        &["--iterations", "300"],
        &[],
    ));
    for signal in ["KILL", "TERM"] {
        let (n, got) = interrupt_and_resume(tmp.path(), signal);
        assert!(n >= 5, "only {n} SIG{signal}s landed");
        assert_eq!(got, chain(&rdir), "after {n} SIG{signal}s");
    }
}

#[test]
fn a_species_named_like_a_reserved_column_is_bad_input() {
    // hare–lynx with the hare renamed `particle`: a valid job, but the
    // dataflow executor's table already has a `particle` column.
    let tmp = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let data = std::fs::read_to_string(root.join("data/hare-lynx.csv"))
        .unwrap()
        .replace("hare", "particle");
    let data_path = tmp.path().join("data.csv");
    std::fs::write(&data_path, data).unwrap();
    let text = std::fs::read_to_string(job("hare-lynx-quick.toml"))
        .unwrap()
        .replace("hare", "particle")
        .replace(
            "../data/particle-lynx.csv",
            &data_path.display().to_string(),
        );
    let job_path = tmp.path().join("job.toml");
    std::fs::write(&job_path, text).unwrap();
    let out = pcmc()
        .arg("run")
        .arg(&job_path)
        .args(["--executor", "dataflow", "--quiet", "--out"])
        .arg(tmp.path().join("o"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("model.species") && err.contains("\"particle\""),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // The same job runs on rayon.
    let ok_out = pcmc().arg("check").arg(&job_path).output().unwrap();
    ok(&ok_out);
}

/// SMC² with its θ-particles in 1, 3 and 8 dataflow partitions (and with
/// injected task failures) writes the serial run's `particles.csv` and
/// `summary.json` byte for byte.
#[test]
fn smc2_on_dataflow_writes_the_serial_bytes_at_1_3_8_partitions() {
    let tmp = tempfile::tempdir().unwrap();
    let job = common::smc2_job(tmp.path(), "lv11-smc2");
    let go = |dir: &Path, args: &[&str], env: &[(&str, &str)]| {
        let mut c = pcmc();
        c.arg("run")
            .arg(&job)
            .arg("--out")
            .arg(dir)
            .arg("--quiet")
            .args(args)
            .envs(env.iter().copied());
        ok(&c.output().unwrap());
        ["particles.csv", "summary.json"].map(|f| std::fs::read(dir.join(f)).unwrap())
    };
    let expected = go(&tmp.path().join("serial"), &["--executor", "serial"], &[]);
    for (parts, threads) in [("1", "1"), ("3", "2"), ("8", "2")] {
        let dir = tmp.path().join(format!("p{parts}"));
        let args = [
            "--executor",
            "dataflow",
            "--partitions",
            parts,
            "--threads",
            threads,
        ];
        assert!(go(&dir, &args, &[]) == expected, "P={parts}: bytes differ");
        let run: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
        assert_eq!(run["executor"], "dataflow");
        assert_eq!(run["workers"].as_u64(), Some(parts.parse().unwrap()));
    }
    let failing = [
        ("PCMC_DATAFLOW_FAIL_RATE", "0.3"),
        ("PCMC_DATAFLOW_MAX_ATTEMPTS", "40"),
    ];
    let dir = tmp.path().join("failing");
    let args = ["--executor", "dataflow", "--partitions", "4"];
    assert!(
        go(&dir, &args, &failing) == expected,
        "with injected failures: bytes differ"
    );
    // Replicates: the same bytes as serial.
    let reps = ["--replicates", "2"];
    let expected = go(
        &tmp.path().join("serial-replicates"),
        &["--executor", "serial", reps[0], reps[1]],
        &[],
    );
    let args = [
        "--executor",
        "dataflow",
        "--partitions",
        "3",
        reps[0],
        reps[1],
    ];
    assert!(
        go(&tmp.path().join("p3-replicates"), &args, &[]) == expected,
        "with replicates: bytes differ"
    );
}
