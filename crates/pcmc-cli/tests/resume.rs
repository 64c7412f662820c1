//! Checkpoint and resume: a run killed at random moments and resumed each
//! time ends with exactly the chain of an uninterrupted run; bad checkpoints
//! are refused with exit status 2 and nothing in the directory is touched.
mod common;

use common::pcmc;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn start(dir: &Path, resume: bool, extra: &[&str]) -> Child {
    let mut c = pcmc();
    c.arg("run")
        .arg(common::job("lv11-quick.toml"))
        .arg("--out")
        .arg(dir)
        .args(["--quiet", "--checkpoint-every", "1"])
        .args(extra);
    if resume {
        c.arg("--resume");
    }
    c.stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(mut child: Child) {
    let status = child.wait().unwrap();
    let mut err = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "{status:?}: {err}");
}

fn reference(tmp: &Path, extra: &[&str]) -> Vec<u8> {
    let dir = tmp.join("reference");
    finish(start(&dir, false, extra));
    std::fs::read(dir.join("chain.csv")).unwrap()
}

/// Pseudo-random delays from a fixed-seed LCG: the moments differ from kill to
/// kill but the test is repeatable.
fn delays(n: usize, seed: u64) -> Vec<Duration> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            Duration::from_millis((x >> 33) % 250)
        })
        .collect()
}

fn interrupt_and_resume(signal: &str, seed: u64, extra: &[&str]) -> (usize, Vec<u8>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let mut interruptions = 0;
    let mut resume = false;
    // Keep interrupting until five interruptions have landed (a run may
    // finish before its signal on a fast attempt).
    for d in delays(20, seed) {
        if interruptions >= 5 {
            break;
        }
        let before = common::chain_lines(&dir);
        let mut child = start(&dir, resume, extra);
        resume = true;
        if !common::wait_for_progress(&mut child, &dir, before, d) {
            // Finished before the signal: nothing to interrupt this time.
            let _ = child.wait();
            continue;
        }
        let pid = child.id().to_string();
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(&pid)
            .status()
            .unwrap();
        assert!(ok.success());
        let status = child.wait().unwrap();
        if signal == "TERM" && status.code() == Some(0) {
            continue; // it finished while the signal was being handled
        }
        if signal == "TERM" {
            assert_eq!(
                status.code(),
                Some(75),
                "SIGTERM must checkpoint and exit 75"
            );
        }
        interruptions += 1;
    }
    finish(start(&dir, true, extra));
    (interruptions, std::fs::read(dir.join("chain.csv")).unwrap())
}

#[test]
fn sigkill_at_random_moments_then_resume_is_bit_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let expected = reference(tmp.path(), &["--iterations", "400"]);
    let (kills, got) = interrupt_and_resume("KILL", 42, &["--iterations", "400"]);
    assert!(kills >= 5, "only {kills} kills landed");
    assert_eq!(
        String::from_utf8(got).unwrap(),
        String::from_utf8(expected).unwrap()
    );
}

#[test]
fn sigterm_checkpoints_and_resume_is_bit_identical_across_thread_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let expected = reference(tmp.path(), &["--iterations", "400"]);
    // Resuming with another worker count gives the same bytes.
    let (terms, got) = interrupt_and_resume("TERM", 7, &["--iterations", "400", "--threads", "1"]);
    assert!(terms >= 5, "only {terms} SIGTERMs landed");
    assert_eq!(
        String::from_utf8(got).unwrap(),
        String::from_utf8(expected).unwrap()
    );
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn bad_checkpoints_are_refused_and_nothing_is_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    finish(start(&a, false, &[]));
    finish(start(&b, false, &["--seed", "99"]));
    let ckpt = a.join("checkpoint.json");
    let good = std::fs::read(&ckpt).unwrap();
    let text = String::from_utf8(good.clone()).unwrap();
    // Change one digit inside the payload.
    let pos = text.find("\"iteration\\\":").unwrap() + 14;
    let mut corrupt = good.clone();
    corrupt[pos] = if corrupt[pos] == b'1' { b'2' } else { b'1' };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("corrupted", corrupt, "checksum mismatch"),
        (
            "truncated",
            good[..good.len() / 2].to_vec(),
            "truncated or corrupted",
        ),
        ("empty", Vec::new(), "truncated or corrupted"),
        (
            "other job",
            std::fs::read(b.join("checkpoint.json")).unwrap(),
            "another job",
        ),
        (
            "garbage",
            b"\x00\xffnot json".to_vec(),
            "not a valid checkpoint",
        ),
    ];
    for (name, bytes, expect) in cases {
        std::fs::write(&ckpt, &bytes).unwrap();
        let before = snapshot(&a);
        let out = pcmc()
            .arg("run")
            .arg(common::job("lv11-quick.toml"))
            .arg("--out")
            .arg(&a)
            .args(["--resume", "--quiet"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains(expect), "{name}: {err}");
        assert!(!err.contains("panicked"));
        assert_eq!(snapshot(&a), before, "{name}: the run directory changed");
    }
    // The good checkpoint of a finished run resumes to the same outputs.
    std::fs::write(&ckpt, &good).unwrap();
    let chain = std::fs::read(a.join("chain.csv")).unwrap();
    finish(start(&a, true, &[]));
    assert_eq!(std::fs::read(a.join("chain.csv")).unwrap(), chain);
    // ... and extending it (--extend) with more iterations equals a longer
    // run from scratch.
    finish(start(&a, true, &["--iterations", "30", "--extend"]));
    let c = tmp.path().join("c");
    finish(start(&c, false, &["--iterations", "30"]));
    assert_eq!(
        std::fs::read(a.join("chain.csv")).unwrap(),
        std::fs::read(c.join("chain.csv")).unwrap()
    );
}

fn stderr_of(child: Child) -> (Option<i32>, String) {
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts a run (not quiet, so that its hint is printed), stops it with
/// SIGTERM once it has written rows, and returns its standard error.
fn start_and_stop(dir: &Path, job: &Path, extra: &[&str]) -> String {
    let mut child = pcmc()
        .arg("run")
        .arg(job)
        .arg("--out")
        .arg(dir)
        .args(["--checkpoint-every", "1"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        common::wait_for_progress(&mut child, dir, 1, Duration::from_millis(50)),
        "the run finished before it could be stopped"
    );
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let (code, err) = stderr_of(child);
    assert_eq!(code, Some(75), "SIGTERM must checkpoint and exit 75: {err}");
    err
}

/// The command between backticks after "continue with", split into words
/// (the test's paths need no quoting).
fn hinted_command(err: &str) -> Vec<String> {
    let at = err
        .find("continue with `")
        .unwrap_or_else(|| panic!("no hint printed: {err}"));
    let rest = &err[at + "continue with `".len()..];
    let cmd = &rest[..rest.find('`').unwrap()];
    cmd.split_whitespace().map(str::to_string).collect()
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap()
}

/// The scenario: a run of 600 iterations (the job says 20) stopped
/// by SIGTERM, continued with exactly the command it printed, ends with
/// the uninterrupted run's chain and a summary of 600 iterations.
#[test]
fn the_printed_hint_continues_the_run_that_was_started() {
    let tmp = tempfile::tempdir().unwrap();
    let expected = reference(tmp.path(), &["--iterations", "600"]);
    let dir = tmp.path().join("R");
    let err = start_and_stop(
        &dir,
        &common::job("lv11-quick.toml"),
        &["--iterations", "600"],
    );
    let words = hinted_command(&err);
    assert_eq!(words[0], "pcmc");
    assert!(!words.iter().any(|w| w == "--iterations"), "{words:?}");
    let out = pcmc().args(&words[1..]).arg("--quiet").output().unwrap();
    common::ok(&out);
    assert_eq!(
        String::from_utf8(std::fs::read(dir.join("chain.csv")).unwrap()).unwrap(),
        String::from_utf8(expected).unwrap()
    );
    let s = summary(&dir);
    assert_eq!(s["iterations"], 600);
    assert_eq!(s["draws"], 2 * 600);
    let acc = s["acceptance_rate"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc), "acceptance {acc}");
    for a in s["acceptance_per_chain"].as_array().unwrap() {
        assert!((0.0..=1.0).contains(&a.as_f64().unwrap()), "{s}");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Every flag of `pcmc run` changed between the start and `--resume`:
/// a flag that sets what the chain is (method, seed, iterations, chains,
/// first chain, particles, θ-particles, data, a job field) is refused
/// naming the setting and both values, and leaves the directory as it
/// was; a flag that only says how to compute it (executor, threads,
/// kernel, early rejection, checkpoint interval, quiet) continues the run
/// to the bytes of an uninterrupted one; `--extend` runs it on to more
/// iterations, the bytes of a run started that long.
#[test]
fn every_flag_changed_between_start_and_resume_is_refused_or_gives_the_same_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let start_flags = [
        "--iterations",
        "300",
        "--seed",
        "5",
        "--particles",
        "60",
        "--chains",
        "2",
    ];
    let job = tmp.path().join("job.toml");
    let text = std::fs::read_to_string(common::job("lv11-quick.toml"))
        .unwrap()
        .replace(
            "../data/lv11.csv",
            &common::job("../data/lv11.csv").display().to_string(),
        );
    std::fs::write(&job, &text).unwrap();
    let expected = {
        let d = tmp.path().join("reference");
        let out = pcmc()
            .arg("run")
            .arg(&job)
            .arg("--out")
            .arg(&d)
            .arg("--quiet")
            .args(start_flags)
            .output()
            .unwrap();
        common::ok(&out);
        std::fs::read(d.join("chain.csv")).unwrap()
    };
    let stopped = tmp.path().join("stopped");
    start_and_stop(&stopped, &job, &start_flags);
    let other_data = tmp.path().join("other.csv");
    std::fs::write(
        &other_data,
        std::fs::read_to_string(common::job("../data/lv11.csv"))
            .unwrap()
            .replacen("\n2,", "\n2,1", 1),
    )
    .unwrap();
    let edited = tmp.path().join("edited.toml");
    std::fs::write(&edited, text.replace("burn_in = 10", "burn_in = 12")).unwrap();
    let resume = |name: &str, job: &Path, flags: &[&str]| {
        let d = tmp.path().join(name);
        copy_dir(&stopped, &d);
        let out = pcmc()
            .arg("run")
            .arg(job)
            .arg("--out")
            .arg(&d)
            .args(["--resume", "--quiet"])
            .args(flags)
            .output()
            .unwrap();
        (d, out)
    };
    let od = other_data.display().to_string();
    let refused: Vec<(&str, Vec<&str>, Vec<&str>)> = vec![
        (
            "iterations",
            vec!["--iterations", "200"],
            vec!["--iterations", "200", "iterations = 300", "--extend"],
        ),
        ("seed", vec!["--seed", "6"], vec!["--seed", "6", "seed = 5"]),
        (
            "chains",
            vec!["--chains", "3"],
            vec!["--chains", "3", "chains = 2"],
        ),
        (
            "first-chain",
            vec!["--first-chain", "4"],
            vec!["--first-chain", "4", "first chain = 0"],
        ),
        (
            "particles",
            vec!["--particles", "70"],
            vec!["--particles", "70", "filter.particles = 60"],
        ),
        (
            "method",
            vec!["--method", "smc2"],
            vec!["--method", "smc2", "method = pmmh"],
        ),
        (
            "theta-particles",
            vec!["--theta-particles", "10"],
            vec!["--theta-particles", "smc2 only"],
        ),
        (
            "data",
            vec!["--data", od.as_str()],
            vec!["data values differ"],
        ),
        (
            "shorter",
            vec!["--extend", "--iterations", "200"],
            vec!["--extend", "not more than the 300"],
        ),
        ("force", vec!["--force"], vec!["--force", "--resume"]),
    ];
    for (name, flags, expect) in refused {
        let before = snapshot(&stopped);
        let (d, out) = resume(name, &job, &flags);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        for e in expect {
            assert!(err.contains(e), "{name}: {e:?} not in {err}");
        }
        assert!(!err.contains("panicked"), "{name}: {err}");
        assert_eq!(snapshot(&d), before, "{name}: the run directory changed");
    }
    // A job field edited since the start is named with both values.
    let (_, out) = resume("edited", &edited, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("mcmc.burn_in: 10 when the run started, 12 now"),
        "{err}"
    );
    // How to compute, not what: the same chain.
    let mut same: Vec<(&str, Vec<&str>)> = vec![
        ("none", vec![]),
        ("same-values", start_flags.to_vec()),
        ("threads", vec!["--threads", "1"]),
        ("serial", vec!["--executor", "serial"]),
        ("kernel", vec!["--kernel", "scalar"]),
        ("no-early-rejection", vec!["--no-early-rejection"]),
        ("checkpoint-every", vec!["--checkpoint-every", "7"]),
    ];
    if cfg!(feature = "dataflow") {
        same.push((
            "dataflow",
            vec!["--executor", "dataflow", "--partitions", "3"],
        ));
    }
    for (name, flags) in same {
        let (d, out) = resume(name, &job, &flags);
        common::ok(&out);
        assert_eq!(
            std::fs::read(d.join("chain.csv")).unwrap(),
            expected,
            "{name}: another chain"
        );
        assert_eq!(summary(&d)["draws"], 600, "{name}");
    }
    // --extend: the chain of a run started with 450 iterations.
    let (d, out) = resume("extend", &job, &["--extend", "--iterations", "450"]);
    common::ok(&out);
    let longer = tmp.path().join("longer");
    let mut flags = start_flags.to_vec();
    flags[1] = "450";
    let out = pcmc()
        .arg("run")
        .arg(&job)
        .arg("--out")
        .arg(&longer)
        .arg("--quiet")
        .args(&flags)
        .output()
        .unwrap();
    common::ok(&out);
    assert_eq!(
        std::fs::read(d.join("chain.csv")).unwrap(),
        std::fs::read(longer.join("chain.csv")).unwrap()
    );
    let s = summary(&d);
    assert_eq!(
        (s["iterations"].clone(), s["draws"].clone()),
        (450.into(), 900.into())
    );
}

/// SMC²'s settings are stored too: a resumed run keeps its Nθ and Nx, and
/// a flag that contradicts them is refused.
#[test]
fn smc2_resume_keeps_its_settings_and_refuses_contradicting_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let job = common::smc2_job(tmp.path(), "smc2-settings");
    let dir = tmp.path().join("run");
    let run = |flags: &[&str]| {
        pcmc()
            .arg("run")
            .arg(&job)
            .arg("--out")
            .arg(&dir)
            .arg("--quiet")
            .args(flags)
            .output()
            .unwrap()
    };
    common::ok(&run(&["--theta-particles", "16", "--particles", "20"]));
    let particles = std::fs::read(dir.join("particles.csv")).unwrap();
    for (flags, expect) in [
        (
            vec!["--resume", "--theta-particles", "20"],
            "smc2.theta_particles = 16",
        ),
        (vec!["--resume", "--particles", "30"], "smc2.particles = 20"),
        (vec!["--resume", "--method", "pmmh"], "method = smc2"),
        (
            vec!["--resume", "--extend", "--iterations", "5"],
            "PMMH runs only",
        ),
    ] {
        let out = run(&flags);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {err}");
        assert!(err.contains(expect), "{flags:?}: {err}");
    }
    // Without the flags: the same run (16 θ-particles, not the job's 32).
    common::ok(&run(&["--resume"]));
    assert_eq!(std::fs::read(dir.join("particles.csv")).unwrap(), particles);
}

/// A new run into a directory that holds another run's outputs is refused
/// (exit 2, naming the directory, --resume and --force); --force removes
/// the old run's files first, so a change of method leaves none of the
/// other method's files behind.
#[test]
fn a_run_directory_is_never_silently_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let smc2 = common::smc2_job(tmp.path(), "smc2-over-pmmh");
    let run = |job: &Path, flags: &[&str]| {
        pcmc()
            .arg("run")
            .arg(job)
            .arg("--out")
            .arg(&dir)
            .arg("--quiet")
            .args(flags)
            .output()
            .unwrap()
    };
    let lv = common::job("lv11-quick.toml");
    common::ok(&run(&lv, &[]));
    assert!(dir.join("trace.svg").exists());
    for (job, flags) in [(&lv, vec![]), (&smc2, vec!["--theta-particles", "8"])] {
        let before = snapshot(&dir);
        let out = run(job, &flags);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        for e in [
            dir.display().to_string().as_str(),
            "--resume",
            "--force",
            "run.json",
        ] {
            assert!(err.contains(e), "{e:?} not in {err}");
        }
        assert_eq!(snapshot(&dir), before);
    }
    common::ok(&run(&smc2, &["--theta-particles", "8", "--force"]));
    for gone in [
        "chain.csv",
        "chain.parquet",
        "trace.svg",
        "autocorr.svg",
        "ranks.svg",
        "checkpoint.json",
    ] {
        assert!(!dir.join(gone).exists(), "{gone} of the PMMH run was left");
    }
    assert!(dir.join("particles.csv").exists());
    // And back: no SMC² file is left beside the PMMH run.
    common::ok(&run(&lv, &["--force"]));
    for gone in [
        "particles.csv",
        "evidence.svg",
        "smc2.svg",
        "smc2-checkpoint.json",
    ] {
        assert!(!dir.join(gone).exists(), "{gone} of the SMC² run was left");
    }
}
