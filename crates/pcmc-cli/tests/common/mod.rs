//! Helpers of the interruption tests: signals are sent once a run has made
//! progress, not after a fixed delay, so that they land however fast the
//! machine and the kernel are.
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

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
