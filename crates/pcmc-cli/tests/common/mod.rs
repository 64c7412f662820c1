//! Helpers shared by the command-line tests. Each test file compiles this
//! module on its own and uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// The `pcmc` binary under test, without the dataflow failure-injection
/// variables of the calling environment.
pub fn pcmc() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pcmc"));
    c.env_remove("PCMC_DATAFLOW_FAIL_RATE")
        .env_remove("PCMC_DATAFLOW_MAX_ATTEMPTS");
    c
}

/// A shipped job file.
pub fn job(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../jobs")
        .join(name)
}

/// Asserts that a command succeeded, showing its output otherwise.
pub fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// Interruption tests send signals once a run has made progress, not after a
// fixed delay, so that they land however fast the machine and the kernel are.

/// Lines of the run's `chain.csv` (0 while it does not exist).
pub fn chain_lines(dir: &Path) -> usize {
    std::fs::read(dir.join("chain.csv"))
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}

/// Waits until the run writing into `dir` has more than `before` chain lines,
/// then `extra` longer. False when the process ended first (the run was
/// complete: nothing left to interrupt).
pub fn wait_for_progress(child: &mut Child, dir: &Path, before: usize, extra: Duration) -> bool {
    let start = Instant::now();
    while chain_lines(dir) <= before {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "no chain row written in 180 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(extra);
    child.try_wait().unwrap().is_none()
}

/// Polls `child` until it exits, at most `limit` (then kills it and panics).
pub fn wait_child(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// lv11-quick as an SMC² job in `dir`: priors log-uniform over a factor 1.5
/// either side of the truth (the shipped job's factor 100 needs far more
/// θ-particles than a test can afford: with 32, every θ-particle's filter
/// died by observation 10 even at a factor 10), 32 θ-particles, Nx from 30 to at
/// most 120.
pub fn smc2_job(dir: &Path, name: &str) -> PathBuf {
    let text = std::fs::read_to_string(job("lv11-quick.toml"))
        .unwrap()
        .replace(
            "../data/lv11.csv",
            &job("../data/lv11.csv").display().to_string(),
        )
        .replace(
            "name = \"lv11-quick\"",
            &format!("name = \"{name}\"\nmethod = \"smc2\""),
        )
        .replace("lower = 0.01, upper = 100.0", "lower = 0.67, upper = 1.5")
        .replace(
            "lower = 0.00005, upper = 0.5",
            "lower = 0.0033, upper = 0.0075",
        )
        .replace("lower = 0.006, upper = 60.0", "lower = 0.4, upper = 0.9")
        + "\n[smc2]\ntheta_particles = 32\nparticles = 30\nmax_particles = 120\n";
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}
