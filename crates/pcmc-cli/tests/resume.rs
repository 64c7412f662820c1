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
    // ... and extending it with more iterations equals a longer run from scratch.
    finish(start(&a, true, &["--iterations", "30"]));
    let c = tmp.path().join("c");
    finish(start(&c, false, &["--iterations", "30"]));
    assert_eq!(
        std::fs::read(a.join("chain.csv")).unwrap(),
        std::fs::read(c.join("chain.csv")).unwrap()
    );
}
