//! The MPI executor under `mpirun`: chains byte-identical to rayon for rank
//! counts that do not divide the particle count, several chains, and a killed
//! rank ending the job quickly with a non-zero status. Built with
//! `--features mpi`; needs OpenMPI's `mpirun`.
#![cfg(feature = "mpi")]

mod common;

use common::{job, ok};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn mpirun(ranks: usize) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["-n", &ranks.to_string(), "--oversubscribe"])
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env_remove("SLURM_NTASKS")
        .arg(env!("CARGO_BIN_EXE_pcmc"));
    c
}

fn rayon_chain(tmp: &Path, job_name: &str, extra: &[&str]) -> Vec<u8> {
    let dir = tmp.join(format!("rayon-{job_name}"));
    let out = Command::new(env!("CARGO_BIN_EXE_pcmc"))
        .arg("run")
        .arg(job(job_name))
        .arg("--out")
        .arg(&dir)
        // One directory per job, reused with other flags: replace it.
        .args(["--quiet", "--force"])
        .args(extra)
        .output()
        .unwrap();
    ok(&out);
    std::fs::read(dir.join("chain.csv")).unwrap()
}

fn mpi_chain(
    tmp: &Path,
    job_name: &str,
    ranks: usize,
    extra: &[&str],
) -> (Vec<u8>, serde_json::Value) {
    let dir = tmp.join(format!("mpi{ranks}-{job_name}"));
    let out = mpirun(ranks)
        .arg("run")
        .arg(job(job_name))
        .args(["--executor", "mpi", "--quiet", "--force", "--out"])
        .arg(&dir)
        .args(extra)
        .output()
        .unwrap();
    ok(&out);
    let summary =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    (std::fs::read(dir.join("chain.csv")).unwrap(), summary)
}

#[test]
fn mpi_chains_equal_rayon_at_1_2_3_ranks() {
    let tmp = tempfile::tempdir().unwrap();
    // lv11-quick: 100 particles (3 does not divide it), 2 chains. The
    // reference runs every pass to the end; the MPI runs stop hopeless
    // passes early (the default) and must still give the same bytes.
    let reference = rayon_chain(tmp.path(), "lv11-quick.toml", &["--no-early-rejection"]);
    for ranks in [1, 2, 3] {
        let (chain, summary) = mpi_chain(tmp.path(), "lv11-quick.toml", ranks, &[]);
        assert_eq!(chain, reference, "lv11-quick on {ranks} ranks");
        assert_eq!(summary["early_rejection"]["enabled"], true);
        assert!(
            summary["early_rejection"]["passes_stopped"]
                .as_u64()
                .unwrap()
                > 0,
            "{summary}"
        );
        assert_eq!(summary["workers"], ranks);
        assert_eq!(summary["executor"], "mpi");
        // The 2 chains run on min(2, ranks) groups; particles move between
        // ranks only in a group of several ranks (3 ranks: groups {0, 1}, {2}).
        let groups = ranks.min(2);
        assert_eq!(summary["chain_groups"], groups);
        let moved = summary["bytes_moved"].as_u64().unwrap();
        if ranks > groups {
            assert!(moved > 0, "{summary}");
        } else {
            assert_eq!(moved, 0, "{summary}");
        }
        assert!(summary["load_imbalance"].as_f64().unwrap() >= 1.0);
    }
    // Two predators, 7 particles: neither 2 nor 3 divides it.
    let reference = rayon_chain(tmp.path(), "lv12-quick.toml", &["--particles", "7"]);
    for ranks in [2, 3] {
        let (chain, summary) =
            mpi_chain(tmp.path(), "lv12-quick.toml", ranks, &["--particles", "7"]);
        assert_eq!(chain, reference, "lv12-quick on {ranks} ranks");
        // Every rank works on its slice: busy times are of one order (a
        // rank that reported no work would give max/mean = ranks).
        let imbalance = summary["load_imbalance"].as_f64().unwrap();
        assert!((1.0..ranks as f64).contains(&imbalance), "{summary}");
        let per_step = &summary["load_imbalance_per_step"];
        assert!(per_step["steps"].as_u64().unwrap() > 0, "{per_step}");
        let (mean, max) = (
            per_step["mean"].as_f64().unwrap(),
            per_step["max"].as_f64().unwrap(),
        );
        assert!(
            1.0 <= mean && mean <= max && max <= ranks as f64,
            "{per_step}"
        );
    }
    // Without early rejection on MPI too.
    let (chain, summary) = mpi_chain(
        tmp.path(),
        "lv12-quick.toml",
        2,
        &["--particles", "7", "--no-early-rejection"],
    );
    assert_eq!(
        chain, reference,
        "lv12-quick on 2 ranks, every pass to the end"
    );
    assert_eq!(summary["early_rejection"]["passes_stopped"], 0);
    // Incidence, a covariate, missing values, a noise parameter and an
    // initial count in θ.
    let reference = rayon_chain(
        tmp.path(),
        "sir-incidence-quick.toml",
        &["--no-early-rejection"],
    );
    for ranks in [2, 3] {
        let (chain, _) = mpi_chain(tmp.path(), "sir-incidence-quick.toml", ranks, &[]);
        assert_eq!(chain, reference, "sir-incidence-quick on {ranks} ranks");
    }
    // An SBML model (fixed and inferred rate constants from the file).
    let short = ["--iterations", "8"];
    let reference = rayon_chain(tmp.path(), "vilar2002-quick.toml", &short);
    let (chain, _) = mpi_chain(tmp.path(), "vilar2002-quick.toml", 2, &short);
    assert_eq!(chain, reference, "vilar2002-quick on 2 ranks");
}

#[test]
fn adapted_particle_counts_and_checks_are_the_same_on_1_2_3_ranks() {
    let tmp = tempfile::tempdir().unwrap();
    let job_name = "lv11-auto-quick.toml";
    let reference = rayon_chain(tmp.path(), job_name, &[]);
    let rsum: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(tmp.path().join(format!("rayon-{job_name}/summary.json")))
            .unwrap(),
    )
    .unwrap();
    let checks = &rsum["burn_in_checks"];
    assert!(checks.as_array().is_some_and(|c| c.len() == 2), "{rsum}");
    assert_eq!(rsum["particles"], "auto");
    for ranks in [1, 2, 3] {
        let (chain, summary) = mpi_chain(tmp.path(), job_name, ranks, &[]);
        assert_eq!(chain, reference, "{job_name} on {ranks} ranks");
        assert_eq!(&summary["burn_in_checks"], checks, "{ranks} ranks");
        assert_eq!(summary["particles_per_chain"], rsum["particles_per_chain"]);
    }
}

#[test]
fn several_chains_on_2_and_4_ranks() {
    // The ranks split into one group per chain (MPI_Comm_split): 2 chains on
    // 2 ranks run one rank each, on 4 ranks two ranks each; 3 chains on 2
    // ranks put chains 0 and 2 on the first group. Every layout writes the
    // rayon chain byte for byte.
    let tmp = tempfile::tempdir().unwrap();
    for (chains, ranks, groups) in [(2, 2, 2), (2, 4, 2), (3, 2, 2), (2, 1, 1)] {
        let c = chains.to_string();
        let args = ["--chains", &c, "--particles", "30", "--iterations", "6"];
        let reference = rayon_chain(tmp.path(), "lv12-quick.toml", &args);
        let (chain, summary) = mpi_chain(tmp.path(), "lv12-quick.toml", ranks, &args);
        assert_eq!(chain, reference, "{chains} chains on {ranks} ranks");
        assert_eq!(summary["chain_groups"], groups, "{summary}");
        assert_eq!(summary["workers"], ranks);
        // Every chain's filter passes are counted once, as in rayon's run.
        let rayon: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(tmp.path().join("rayon-lv12-quick.toml/summary.json"))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(summary["filter_passes"], rayon["filter_passes"]);
        assert_eq!(summary["filter_steps"], rayon["filter_steps"]);
        assert_eq!(summary["ssa_events"], rayon["ssa_events"]);
    }
}

#[test]
fn undistributable_resampling_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let job_text = std::fs::read_to_string(job("lv11-quick.toml"))
        .unwrap()
        .replace(
            "resampling = \"systematic\"",
            "resampling = \"multinomial\"",
        )
        .replace(
            "../data/lv11.csv",
            &job("../data/lv11.csv").display().to_string(),
        );
    let p = tmp.path().join("multi.toml");
    std::fs::write(&p, job_text).unwrap();
    let out = mpirun(2)
        .arg("run")
        .arg(&p)
        .args(["--executor", "mpi", "--out"])
        .arg(tmp.path().join("o"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("systematic and stratified"), "{err}");
}

#[test]
fn a_killed_rank_ends_the_job_quickly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("killed");
    let mut child = mpirun(2)
        .arg("run")
        .arg(job("lv12-quick.toml"))
        .args([
            "--executor",
            "mpi",
            "--quiet",
            "--iterations",
            "1000",
            "--out",
        ])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Find the ranks (processes running the pcmc binary with this run's
    // output directory on their command line, other than mpirun) and kill
    // one. Under a loaded machine (CI runs these tests in parallel) mpirun
    // can take seconds to start its ranks, so poll instead of guessing.
    let marker = dir.display().to_string();
    let exe = std::fs::canonicalize(env!("CARGO_BIN_EXE_pcmc")).unwrap();
    let wait = Instant::now();
    let pids = loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the job ended ({status:?}) before a rank could be killed");
        }
        let found = Command::new("pgrep")
            .args(["-f", &marker])
            .output()
            .unwrap();
        let pids: Vec<String> = String::from_utf8_lossy(&found.stdout)
            .split_whitespace()
            .filter(|p| *p != child.id().to_string())
            .filter(|p| std::fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|e| e == exe))
            .map(str::to_string)
            .collect();
        if pids.len() == 2 {
            break pids;
        }
        assert!(
            wait.elapsed() < Duration::from_secs(120),
            "the 2 rank processes did not appear within 120 s (found {pids:?})"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // Let the ranks get into the run (past MPI_Init) before killing one.
    std::thread::sleep(Duration::from_secs(1));
    let victim = pids.last().unwrap();
    assert!(
        Command::new("kill")
            .args(["-9", victim])
            .status()
            .unwrap()
            .success()
    );
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(!status.success(), "the job must fail when a rank dies");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the job hangs after a rank died"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Kill `mpirun` (SIGKILL: no checkpoint on the way out) or send it SIGTERM
/// (forwarded to the ranks: they agree on an iteration, checkpoint and exit
/// 75) at several moments, resuming each time on another rank count; the
/// final chain equals the uninterrupted rayon chain.
fn interrupt_mpi(signal: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let args = ["--iterations", "1000", "--checkpoint-every", "1"];
    let reference = rayon_chain(tmp.path(), "lv11-quick.toml", &args);
    let dir = tmp.path().join(format!("mpi-{signal}"));
    let mut x: u64 = 12345;
    let mut landed = 0;
    // Keep interrupting until five interruptions have landed (a run may
    // finish before its signal on a fast attempt).
    let mut attempt = 0;
    while landed < 5 && attempt < 20 {
        attempt += 1;
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delay = Duration::from_millis((x >> 33) % 250);
        let ranks = 2 + attempt % 2;
        let mut c = mpirun(ranks);
        c.arg("run")
            .arg(job("lv11-quick.toml"))
            .args(["--executor", "mpi", "--quiet", "--out"])
            .arg(&dir)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if attempt > 1 {
            c.arg("--resume");
        }
        let before = common::chain_lines(&dir);
        let mut child = c.spawn().unwrap();
        if !common::wait_for_progress(&mut child, &dir, before, delay) {
            continue;
        }
        Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .unwrap();
        let status = child.wait().unwrap();
        if !status.success() {
            landed += 1;
        }
        // Let orphaned ranks of a SIGKILLed mpirun disappear before resuming.
        let marker = dir.display().to_string();
        for _ in 0..50 {
            let alive = Command::new("pgrep")
                .args(["-f", &marker])
                .output()
                .unwrap();
            if alive.stdout.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("pkill").args(["-9", "-f", &marker]).status();
    }
    assert!(landed >= 5, "only {landed} interruptions landed");
    let out = mpirun(3)
        .arg("run")
        .arg(job("lv11-quick.toml"))
        .args(["--executor", "mpi", "--quiet", "--resume", "--out"])
        .arg(&dir)
        .args(args)
        .output()
        .unwrap();
    ok(&out);
    assert_eq!(std::fs::read(dir.join("chain.csv")).unwrap(), reference);
}

#[test]
fn killed_mpirun_resumes_bit_identically() {
    interrupt_mpi("KILL");
}

#[test]
fn sigterm_to_mpirun_checkpoints_and_resumes_bit_identically() {
    interrupt_mpi("TERM");
}

/// SMC² with θ-particles across 1, 2 and 3 ranks gives the serial
/// executor's `particles.csv` and `summary.json` byte for byte.
#[test]
fn smc2_on_1_2_3_ranks_equals_serial() {
    let tmp = tempfile::tempdir().unwrap();
    let job = common::smc2_job(tmp.path(), "mpi-smc2");
    let reference = tmp.path().join("serial");
    let out = Command::new(env!("CARGO_BIN_EXE_pcmc"))
        .arg("run")
        .arg(&job)
        .args(["--executor", "serial", "--quiet", "--out"])
        .arg(&reference)
        .output()
        .unwrap();
    ok(&out);
    for ranks in [1, 2, 3] {
        let dir = tmp.path().join(format!("mpi{ranks}"));
        let out = mpirun(ranks)
            .arg("run")
            .arg(&job)
            .args(["--executor", "mpi", "--quiet", "--out"])
            .arg(&dir)
            .output()
            .unwrap();
        ok(&out);
        for f in ["particles.csv", "summary.json"] {
            assert_eq!(
                std::fs::read(reference.join(f)).unwrap(),
                std::fs::read(dir.join(f)).unwrap(),
                "{f} on {ranks} ranks"
            );
        }
        let run: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
        assert_eq!(run["workers"], ranks);
    }
    // Replicates: every rank runs them in turn, the same bytes as serial.
    let reference = tmp.path().join("serial-replicates");
    let out = Command::new(env!("CARGO_BIN_EXE_pcmc"))
        .arg("run")
        .arg(&job)
        .args([
            "--executor",
            "serial",
            "--replicates",
            "2",
            "--quiet",
            "--out",
        ])
        .arg(&reference)
        .output()
        .unwrap();
    ok(&out);
    let dir = tmp.path().join("mpi2-replicates");
    let out = mpirun(2)
        .arg("run")
        .arg(&job)
        .args(["--executor", "mpi", "--replicates", "2", "--quiet", "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    ok(&out);
    for f in ["particles.csv", "summary.json"] {
        assert_eq!(
            std::fs::read(reference.join(f)).unwrap(),
            std::fs::read(dir.join(f)).unwrap(),
            "{f} with replicates on 2 ranks"
        );
    }
}
