//! The dataflow executor on a Ballista cluster, end to end: pcmc's own
//! scheduler and executors as separate processes on 127.0.0.1 (ports chosen
//! free at run time). `chain.csv` is byte-identical to rayon's with 1, 2 and
//! 3 executors and 1, 3 and 8 partitions; an executor killed with SIGKILL
//! during a run costs re-run tasks or a resubmitted job, not the chain, and
//! one killed while its task runs has that task re-run by Ballista itself;
//! a scheduler killed during a run ends it with exit status 75 after a
//! checkpoint, and `--resume` on a new cluster finishes the same chain; bad
//! addresses exit 2. Built with `--features ballista`.
#![cfg(feature = "ballista")]

mod common;

use common::{job, ok, pcmc};
use pcmc_cli::cluster::LocalCluster;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Flags that keep the runs short: one chain, 6 iterations after the
/// 10 burn-in iterations of lv11-quick.
const SHORT: [&str; 4] = ["--iterations", "6", "--chains", "1"];

fn free_port() -> u16 {
    pcmc_cli::cluster::free_port().unwrap()
}

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_pcmc"))
}

fn start(dir: &Path, executors: usize) -> LocalCluster {
    LocalCluster::start(exe(), dir, executors).unwrap()
}

/// Polls `child` (spawned with piped stderr) until it exits, at most
/// `limit`; its status and what it wrote to stderr.
fn finish(child: &mut Child, limit: Duration) -> (std::process::ExitStatus, String) {
    let status = common::wait_child(child, limit);
    let mut err = String::new();
    use std::io::Read;
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut err).unwrap();
    }
    (status, err)
}

fn run_args<'a>(dir: &'a Path, job_name: &str, args: &[&'a str]) -> Command {
    let mut c = pcmc();
    c.arg("run")
        .arg(job(job_name))
        .arg("--out")
        .arg(dir)
        .arg("--quiet")
        .args(args);
    c
}

fn run(dir: &Path, job_name: &str, args: &[&str]) -> Output {
    run_args(dir, job_name, args).output().unwrap()
}

/// `pcmc run` flags for the dataflow executor on `cluster` (its scheduler,
/// secret and work root) with `partitions` partitions, then `extra`.
fn cluster_args(cluster: &LocalCluster, partitions: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["--executor", "dataflow", "--partitions", partitions]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(cluster.run_flags());
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Starts `pcmc run` in the background, its stderr kept for [`finish`].
fn spawn_run(dir: &Path, job_name: &str, args: &[&str]) -> Child {
    spawn_run_with(dir, job_name, args, &[])
}

/// [`spawn_run`] with the variables `env` set.
fn spawn_run_with(dir: &Path, job_name: &str, args: &[&str], env: &[(&str, &str)]) -> Child {
    run_args(dir, job_name, args)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn chain(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("chain.csv")).unwrap()
}

fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}

fn reference(tmp: &Path, job_name: &str) -> Vec<u8> {
    let dir = tmp.join(format!("rayon-{job_name}"));
    let mut args = vec!["--threads", "2", "--no-early-rejection"];
    args.extend(SHORT);
    ok(&run(&dir, job_name, &args));
    chain(&dir)
}

fn ballista_run(cluster: &LocalCluster, dir: &Path, job_name: &str, parts: usize) -> Output {
    let p = parts.to_string();
    let out = run(dir, job_name, &strs(&cluster_args(cluster, &p, &SHORT)));
    if !out.status.success() {
        panic!(
            "run failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            cluster.logs()
        );
    }
    out
}

#[test]
fn ballista_chains_equal_rayon_with_1_2_3_executors_and_1_3_8_partitions() {
    let tmp = tempfile::tempdir().unwrap();
    let lv11 = reference(tmp.path(), "lv11-quick.toml");
    let lv12 = reference(tmp.path(), "lv12-quick.toml");
    // The particle count adapted during burn-in: the same counts and checks.
    let auto = reference(tmp.path(), "lv11-auto-quick.toml");
    let sir = reference(tmp.path(), "sir-incidence-quick.toml");
    // An SBML model: fixed and scaled rate constants travel to executors.
    let vilar = reference(tmp.path(), "vilar2002-quick.toml");
    let auto_checks =
        summary(&tmp.path().join("rayon-lv11-auto-quick.toml"))["burn_in_checks"].clone();
    assert!(auto_checks.is_array(), "{auto_checks}");
    let mut cluster = start(&tmp.path().join("cluster"), 1);
    for (executors, parts, job_name, expected) in [
        (1, 1, "lv11-quick.toml", &lv11),
        (1, 3, "lv12-quick.toml", &lv12),
        (2, 3, "lv11-quick.toml", &lv11),
        (2, 3, "lv11-auto-quick.toml", &auto),
        (2, 8, "lv12-quick.toml", &lv12),
        (3, 8, "lv11-quick.toml", &lv11),
        (3, 1, "lv12-quick.toml", &lv12),
        (2, 3, "sir-incidence-quick.toml", &sir),
        (2, 3, "vilar2002-quick.toml", &vilar),
    ] {
        while cluster.executors().len() < executors {
            cluster.add_executor().unwrap();
            let n = cluster.executors().len();
            cluster.wait(n).unwrap();
        }
        let dir = tmp.path().join(format!("b{executors}-{parts}-{job_name}"));
        ballista_run(&cluster, &dir, job_name, parts);
        assert_eq!(
            &chain(&dir),
            expected,
            "{job_name}: {executors} executor(s), {parts} partition(s) differ from rayon"
        );
        let s = summary(&dir);
        if job_name == "lv11-auto-quick.toml" {
            assert_eq!(s["burn_in_checks"], auto_checks);
        }
        assert_eq!(s["executor"], "ballista");
        assert_eq!(s["workers"], parts);
        let c = &s["cluster"];
        assert!(c["jobs"].as_u64().unwrap() >= 2, "{c}");
        assert_eq!(c["jobs_resubmitted"], 0, "{c}");
        assert_eq!(c["tasks_rerun"], 0, "{c}");
        assert!(c["scheduling_seconds"].as_f64().unwrap() >= 0.0, "{c}");
        if job_name != "vilar2002-quick.toml" {
            assert!(
                s["early_rejection"]["passes_stopped"].as_u64().unwrap() > 0,
                "{s}"
            );
        }
        if parts > 1 {
            assert!(s["rows_moved"].as_u64().unwrap() > 0, "{s}");
        } else {
            assert_eq!(s["rows_moved"], 0);
        }
        // Nothing is left in the work root.
        let work = cluster.work_root();
        assert_eq!(
            std::fs::read_dir(&work).unwrap().count(),
            0,
            "{} is not empty",
            work.display()
        );
    }
}

/// Pseudo-random delays from a fixed-seed LCG.
fn delays(n: usize, seed: u64, max_ms: u64) -> Vec<Duration> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            Duration::from_millis((x >> 33) % max_ms)
        })
        .collect()
}

#[test]
fn sigkill_of_an_executor_reruns_its_tasks_and_keeps_the_chain() {
    // Three rounds, each killing an executor (alternating) at a random
    // moment of a run while a task runs on it. Tasks of ~50 ms (600
    // particles in 2 partitions) against ~3 ms of scheduling per job: a
    // kill aimed at a running task lands before it ends. (With lv11-quick's
    // tasks of a few ms most kills landed between tasks and tested nothing.)
    let tmp = tempfile::tempdir().unwrap();
    let flags = ["--particles", "600"];
    let rdir = tmp.path().join("rayon");
    let mut args = vec!["--threads", "2"];
    args.extend(flags);
    ok(&run(&rdir, "lv12-quick.toml", &args));
    let expected = chain(&rdir);
    let mut cluster = start(&tmp.path().join("cluster"), 2);
    let mut kills = 0;
    for (round, d) in delays(12, 2026, 1500).into_iter().enumerate() {
        if kills >= 3 {
            break;
        }
        let dir = tmp.path().join(format!("kill-{round}"));
        let args = cluster_args(&cluster, "2", &flags);
        let mut child = spawn_run(&dir, "lv12-quick.toml", &strs(&args));
        let victim = round % 2;
        if !common::wait_for_progress(&mut child, &dir, 0, d)
            || !wait_for_running_task(&mut cluster, victim, &mut child, Duration::from_millis(20))
        {
            let _ = child.wait();
            continue; // finished before the kill: try again
        }
        cluster.executors()[victim].kill();
        let (status, err) = finish(&mut child, Duration::from_secs(600));
        assert!(
            status.success(),
            "run after killing an executor: {status:?}\n{err}\n{}",
            cluster.logs()
        );
        assert_eq!(chain(&dir), expected, "round {round}: the chain changed");
        let c = summary(&dir)["cluster"].clone();
        let redone = c["tasks_rerun"].as_u64().unwrap() + c["jobs_resubmitted"].as_u64().unwrap();
        eprintln!("round {round}: executor {victim} killed {d:?} into the run: {c}");
        assert!(
            redone > 0,
            "round {round}: a task was running, none was redone: {c}"
        );
        kills += 1;
        // Replace the lost executor.
        cluster.executors().remove(victim);
        cluster.add_executor().unwrap();
        cluster.wait(2).unwrap();
    }
    assert_eq!(
        kills, 3,
        "only {kills} executor kill(s) landed while tasks were running"
    );
}

/// Task ids the executor log shows started and not finished, with the time
/// each was first seen running.
fn running_tasks(
    log: &str,
    seen: &mut std::collections::HashMap<String, Instant>,
) -> Vec<(String, Duration)> {
    let mut started = Vec::new();
    let mut finished = std::collections::HashSet::new();
    for line in log.lines() {
        let tid = |l: &str| {
            l.split('[')
                .nth(1)
                .and_then(|t| t.split(']').next())
                .map(str::to_string)
        };
        if line.contains("Received task") {
            started.extend(tid(line));
        } else if line.contains("Finished task") {
            finished.extend(tid(line));
        }
    }
    started
        .into_iter()
        .filter(|t| !finished.contains(t))
        .map(|t| {
            let first = *seen.entry(t.clone()).or_insert_with(Instant::now);
            (t, first.elapsed())
        })
        .collect()
}

/// Polls executor `victim`'s log until a task has been running on it for
/// at least `age` (true), or the run has ended (false); at most 120 s.
fn wait_for_running_task(
    cluster: &mut LocalCluster,
    victim: usize,
    child: &mut Child,
    age: Duration,
) -> bool {
    let mut seen = std::collections::HashMap::new();
    let started = Instant::now();
    loop {
        let log = cluster.executors()[victim].log();
        if running_tasks(&log, &mut seen)
            .iter()
            .any(|(_, d)| *d >= age)
        {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no task seen running on executor {victim}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn an_executor_killed_during_a_task_has_that_task_rerun_by_ballista() {
    // Tasks of a few hundred ms (2000 particles), one per executor per job
    // (2 executors × 1 slot, 2 partitions): the executor is killed while its
    // task has been running for 50 ms, so the scheduler itself must run the
    // task again on the survivor (no job is resubmitted by pcmc).
    let tmp = tempfile::tempdir().unwrap();
    let flags = ["--particles", "2000"];
    let rdir = tmp.path().join("rayon");
    let mut args = vec!["--threads", "2"];
    args.extend(flags);
    ok(&run(&rdir, "lv12-quick.toml", &args));
    let expected = chain(&rdir);
    let mut cluster = start(&tmp.path().join("cluster"), 2);
    let dir = tmp.path().join("run");
    let args = cluster_args(&cluster, "2", &flags);
    let mut child = spawn_run(&dir, "lv12-quick.toml", &strs(&args));
    assert!(
        common::wait_for_progress(&mut child, &dir, 1, Duration::ZERO),
        "the run finished before an executor could be killed"
    );
    let victim = 0;
    assert!(
        wait_for_running_task(&mut cluster, victim, &mut child, Duration::from_millis(50)),
        "the run ended before a long task was seen running"
    );
    cluster.executors()[victim].kill();
    let (status, err) = finish(&mut child, Duration::from_secs(600));
    assert!(status.success(), "{status:?}\n{err}\n{}", cluster.logs());
    assert_eq!(chain(&dir), expected, "the chain changed");
    let c = summary(&dir)["cluster"].clone();
    eprintln!("killed during a task: {c}");
    assert!(c["tasks_rerun"].as_u64().unwrap() >= 1, "{c}");
    assert_eq!(c["jobs_resubmitted"], 0, "{c}\n{err}");
}

/// Flags of the long-task runs: lv12-quick with 1200 particles in one
/// partition (tasks of ~0.75 s here), one kept iteration.
const LONG_TASKS: [&str; 6] = [
    "--particles",
    "1200",
    "--iterations",
    "1",
    "--partitions",
    "1",
];

/// rayon's chain for [`LONG_TASKS`], computed once for the tests that need it.
fn long_task_reference() -> &'static [u8] {
    static REF: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    REF.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("rayon");
        ok(&run(
            &dir,
            "lv12-quick.toml",
            &["--threads", "2", "--particles", "1200", "--iterations", "1"],
        ));
        chain(&dir)
    })
}

/// `cluster_args` for [`LONG_TASKS`] with `extra` added.
fn long_task_args(cluster: &LocalCluster, extra: &[&str]) -> Vec<String> {
    let mut args = cluster_args(cluster, "1", &LONG_TASKS[..4]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(st.success(), "kill -{sig} {pid}");
}

#[test]
fn jobs_longer_than_the_stall_timeout_finish_while_their_tasks_beat() {
    // The stall timeout is 1 s and every advance job takes longer (its one
    // task propagates 3000 particles): the driver gives up only on a job
    // whose step directory stops changing, and a running task touches its
    // beat file every tenth of the timeout. (Bounding the whole job
    // instead, as before, exits 75 at the first step.) With 0.5 s and 1200
    // particles the test failed once when the suite's other cluster tests
    // loaded the machine: a task started 0.87 s after its job was queued.
    let long = ["--particles", "3000", "--iterations", "1"];
    let reference = tempfile::tempdir().unwrap();
    let rdir = reference.path().join("rayon");
    ok(&run(
        &rdir,
        "lv12-quick.toml",
        &[&["--threads", "2"][..], &long].concat(),
    ));
    let expected = chain(&rdir);
    let tmp = tempfile::tempdir().unwrap();
    let cluster = start(&tmp.path().join("cluster"), 1);
    let dir = tmp.path().join("run");
    let out = run_args(
        &dir,
        "lv12-quick.toml",
        &strs(&cluster_args(&cluster, "1", &long)),
    )
    .env("PCMC_BALLISTA_JOB_TIMEOUT", "1.0")
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        cluster.logs()
    );
    assert_eq!(chain(&dir), expected);
    let s = summary(&dir);
    let advance_jobs = s["cluster"]["jobs"].as_f64().unwrap() / 2.0;
    let per_job = s["stages"]["propagate"].as_f64().unwrap() / advance_jobs;
    eprintln!("advance jobs of {per_job:.3} s on average, stall timeout 1 s");
    assert!(
        per_job > 1.0,
        "jobs of {per_job} s prove nothing: make the tasks longer"
    );
}

#[test]
fn a_stalled_job_is_given_up_cancelled_and_leaves_the_work_root_empty() {
    // The only executor is frozen (SIGSTOP) while its task runs: no
    // progress for the stall timeout (2 s), so the driver checkpoints and
    // exits 75; the scheduler cancels the abandoned job; once thawed, the
    // executor's late task finds its pass directory gone and writes
    // nothing; and `--resume` on the same cluster finishes rayon's chain.
    long_task_reference(); // before the cluster starts: the runs do not compete
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster = start(&tmp.path().join("cluster"), 1);
    let dir = tmp.path().join("run");
    let args = long_task_args(&cluster, &["--checkpoint-every", "1"]);
    let mut child = spawn_run_with(
        &dir,
        "lv12-quick.toml",
        &strs(&args),
        &[("PCMC_BALLISTA_JOB_TIMEOUT", "2")],
    );
    wait_for_checkpoint(&mut child, &dir);
    assert!(
        wait_for_running_task(&mut cluster, 0, &mut child, Duration::from_millis(50)),
        "the run ended before a task was seen running"
    );
    let pid = cluster.executors()[0].id();
    signal(pid, "STOP");
    let frozen = Instant::now();
    let (status, err) = finish(&mut child, Duration::from_secs(120));
    let took = frozen.elapsed();
    signal(pid, "CONT");
    assert_eq!(status.code(), Some(75), "{err}");
    assert!(err.contains("no progress for 2 s"), "{err}");
    assert!(err.contains("--resume"), "{err}");
    eprintln!("given up {took:?} after the executor froze");
    // The scheduler cancelled the job its driver abandoned.
    poll_until(Duration::from_secs(30), "a job cancelled", || {
        cluster.scheduler().log().contains("cancelling it")
    });
    // The thawed executor ends its late task without writing anything.
    let mut seen = std::collections::HashMap::new();
    poll_until(Duration::from_secs(60), "the late task's end", || {
        running_tasks(&cluster.executors()[0].log(), &mut seen).is_empty()
    });
    let work = cluster.work_root();
    let left: Vec<_> = walkdir(&work);
    assert!(
        left.is_empty(),
        "left in the work root: {left:?}\n{}",
        cluster.logs()
    );
    // The cluster is whole again: the run resumes to rayon's chain.
    resume_to_reference(&dir, &args);
}

/// Polls `done` every 2 ms until it holds; panics naming `what` after
/// `limit`.
fn poll_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "no {what} in {limit:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Polls until the run writing into `dir` has written its first checkpoint
/// (at most 300 s).
fn wait_for_checkpoint(child: &mut Child, dir: &Path) {
    let cp = dir.join("checkpoint.json");
    poll_until(Duration::from_secs(300), "checkpoint", || {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended without a checkpoint"
        );
        cp.exists()
    });
}

/// Resumes the long-task run in `dir` (flags `args`) and checks that it
/// finishes rayon's chain.
fn resume_to_reference(dir: &Path, args: &[String]) {
    let resume = [args.to_vec(), vec!["--resume".into()]].concat();
    let out = run(dir, "lv12-quick.toml", &strs(&resume));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(chain(dir), long_task_reference());
}

/// Every path below `dir`.
fn walkdir(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        out.push(e.path());
        if e.path().is_dir() {
            out.extend(walkdir(&e.path()));
        }
    }
    out
}

#[test]
fn a_signal_during_an_iteration_stops_the_run_between_two_jobs() {
    // SIGUSR1 (Slurm's warning before the end of a job's time) lands while
    // the first job of an iteration runs: the run stops before its next
    // job instead of at the end of the iteration, with the checkpoint of
    // the iteration before, and `--resume` finishes rayon's chain.
    long_task_reference(); // before the cluster starts: the runs do not compete
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster = start(&tmp.path().join("cluster"), 1);
    let dir = tmp.path().join("run");
    let args = long_task_args(&cluster, &["--checkpoint-every", "1"]);
    let mut child = spawn_run(&dir, "lv12-quick.toml", &strs(&args));
    // An iteration has just ended when its checkpoint appears; the task
    // running then is the next iteration's first.
    wait_for_checkpoint(&mut child, &dir);
    assert!(
        wait_for_running_task(&mut cluster, 0, &mut child, Duration::ZERO),
        "the run ended before the next iteration's task was seen"
    );
    signal(child.id(), "USR1");
    let (status, err) = finish(&mut child, Duration::from_secs(120));
    assert_eq!(status.code(), Some(75), "{err}");
    assert!(
        err.contains("stopped by a signal during iteration"),
        "{err}"
    );
    resume_to_reference(&dir, &args);
}

#[test]
fn an_executor_that_does_not_see_the_work_directory_is_named_before_the_first_step() {
    // The executor runs in a mount namespace of its own with an empty
    // tmpfs over the work root: the same path, another directory, as a
    // node-local directory on a real cluster. The run's probe finds it
    // before the first step and exits 2 naming the directory and host.
    let tmp = tempfile::tempdir().unwrap();
    let mut cluster = start(&tmp.path().join("cluster"), 0);
    let work = cluster.work_root();
    std::fs::create_dir_all(&work).unwrap();
    let work_s = work.display().to_string();
    cluster
        .add_executor_wrapped(&[
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            "mount -t tmpfs pcmc-node-local \"$0\" && exec \"$@\"",
            &work_s,
        ])
        .unwrap();
    cluster.wait(1).unwrap();
    let dir = tmp.path().join("run");
    let out = run(
        &dir,
        "lv12-quick.toml",
        &strs(&cluster_args(&cluster, "1", &SHORT)),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}\n{}", cluster.logs());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert!(err.contains("does not see the work directory"), "{err}");
    assert!(err.contains(&work_s), "{err}");
    assert!(err.contains(host.trim()), "{err}");
    assert!(!dir.join("chain.csv").exists() || common::chain_lines(&dir) <= 1);
}

#[test]
fn losing_the_scheduler_checkpoints_exits_75_and_resume_finishes_the_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let expected = reference(tmp.path(), "lv11-quick.toml");
    let cdir = tmp.path().join("cluster");
    let mut cluster = start(&cdir, 1);
    let port = cluster.port();
    let dir = tmp.path().join("run");
    let mut args = cluster_args(&cluster, "2", &["--checkpoint-every", "1"]);
    args.extend(SHORT.iter().map(|s| s.to_string()));
    let mut child = spawn_run(&dir, "lv11-quick.toml", &strs(&args));
    assert!(
        common::wait_for_progress(&mut child, &dir, 1, Duration::from_millis(300)),
        "the run finished before the scheduler could be killed"
    );
    cluster.scheduler().kill();
    let (status, err) = finish(&mut child, Duration::from_secs(120));
    assert_eq!(status.code(), Some(75), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.contains("--resume"), "{err}");
    assert!(dir.join("checkpoint.json").is_file());
    drop(cluster);
    // A new cluster on the same address; the run continues where it was.
    let cluster = LocalCluster::start_on(exe(), &cdir, port, 1).unwrap();
    let mut resume = args.clone();
    resume.push("--resume".into());
    let out = run(&dir, "lv11-quick.toml", &strs(&resume));
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        cluster.logs()
    );
    assert_eq!(chain(&dir), expected);
}

/// A well-formed secret for processes that must get past the secret
/// check to show what they say about something else.
const SOME_TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn with_token(mut c: Command) -> Command {
    c.env("PCMC_CLUSTER_TOKEN", SOME_TOKEN);
    c
}

#[test]
fn cluster_processes_refuse_bad_addresses_and_stop_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let nobody = free_port();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let root_s = root.to_str().unwrap();
    for (args, needle) in [
        (
            vec!["cluster", "scheduler", "--bind", "not an address"],
            "--bind",
        ),
        (vec!["cluster", "scheduler", "--bind", "[::1]:x"], "--bind"),
        (
            vec![
                "cluster",
                "executor",
                "--scheduler",
                "nowhere",
                "--work-dir",
                root_s,
            ],
            "--scheduler",
        ),
        (
            vec!["cluster", "wait", "--scheduler", "df://127.0.0.1:0"],
            "--scheduler",
        ),
    ] {
        let out = with_token(pcmc()).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // An executor whose scheduler never answers gives up with exit 2.
    let out = with_token(pcmc())
        .args(["cluster", "executor", "--scheduler"])
        .arg(format!("127.0.0.1:{nobody}"))
        .args(["--connect-timeout", "1", "--work-dir", root_s])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{nobody}")), "{err}");
    // A run pointed at no scheduler fails at once, naming it.
    let dir = tmp.path().join("run");
    let sched = format!("df://127.0.0.1:{nobody}");
    let out = with_token(run_args(
        &dir,
        "lv11-quick.toml",
        &["--executor", "dataflow", "--scheduler", &sched],
    ))
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{nobody}")), "{err}");
    for (args, needle) in [
        (
            vec!["--executor", "dataflow", "--scheduler", "df://host"],
            "--scheduler",
        ),
        (
            vec!["--executor", "rayon", "--scheduler", "df://h:1"],
            "--scheduler",
        ),
        (vec!["--work-dir", "/tmp"], "--work-dir"),
        (vec!["--token-file", "/tmp/x"], "--token-file"),
    ] {
        let out = with_token(run_args(&dir, "lv11-quick.toml", &args))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // SIGTERM stops both processes cleanly.
    let mut cluster = start(&tmp.path().join("cluster"), 1);
    let term = |p: &mut pcmc_cli::cluster::LocalProcess| {
        let ok = Command::new("kill")
            .args(["-TERM", &p.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let status = p
            .wait_exit(Duration::from_secs(60))
            .expect("a cluster process did not stop on SIGTERM");
        assert!(status.success(), "{status:?}\n{}", p.log());
    };
    term(&mut cluster.executors()[0]);
    term(cluster.scheduler());
}

/// `pcmc run` of the SMC² test job (`common::smc2_job`) into `dir` with
/// `args`; its stderr kept for [`finish`].
fn spawn_smc2(job: &Path, dir: &Path, args: &[String]) -> Child {
    pcmc()
        .arg("run")
        .arg(job)
        .arg("--out")
        .arg(dir)
        .arg("--quiet")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn smc2_bytes(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    (
        std::fs::read(dir.join("particles.csv")).unwrap(),
        std::fs::read(dir.join("summary.json")).unwrap(),
    )
}

#[test]
fn smc2_on_two_executors_equals_serial_and_survives_a_killed_executor() {
    // Each batch of θ-particle passes (an observation step, each move, an
    // exchange) is one job of P tasks; the run is the serial run's bytes at
    // 3 and 8 partitions, and again after an executor is killed with
    // SIGKILL while one of its tasks runs (its tasks are rerun or the job
    // resubmitted).
    let tmp = tempfile::tempdir().unwrap();
    let job = common::smc2_job(tmp.path(), "lv11-smc2");
    let sdir = tmp.path().join("serial");
    let (status, err) = finish(
        &mut spawn_smc2(&job, &sdir, &["--executor".into(), "serial".into()]),
        Duration::from_secs(300),
    );
    assert!(status.success(), "{err}");
    let expected = smc2_bytes(&sdir);
    let mut cluster = start(&tmp.path().join("cluster"), 2);
    cluster.wait(2).unwrap();
    for parts in ["3", "8"] {
        let dir = tmp.path().join(format!("ballista-{parts}"));
        let (status, err) = finish(
            &mut spawn_smc2(&job, &dir, &cluster_args(&cluster, parts, &[])),
            Duration::from_secs(600),
        );
        assert!(status.success(), "{err}\n{}", cluster.logs());
        assert!(smc2_bytes(&dir) == expected, "P={parts}: bytes differ");
        let run: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).unwrap()).unwrap();
        assert_eq!(run["executor"], "ballista", "{run}");
        assert_eq!(
            run["workers"].as_u64(),
            Some(parts.parse().unwrap()),
            "{run}"
        );
        let work = cluster.work_root();
        assert_eq!(
            std::fs::read_dir(&work).unwrap().count(),
            0,
            "{} is not empty",
            work.display()
        );
    }
    // Nx 120 and 2 partitions: tasks of tens of milliseconds.
    let flags = cluster_args(&cluster, "2", &["--particles", "120"]);
    let rdir = tmp.path().join("serial-120");
    let (status, err) = finish(
        &mut spawn_smc2(
            &job,
            &rdir,
            &["--executor", "serial", "--particles", "120"].map(String::from),
        ),
        Duration::from_secs(300),
    );
    assert!(status.success(), "{err}");
    let expected = smc2_bytes(&rdir);
    let mut killed = false;
    for (round, d) in delays(6, 77, 1000).into_iter().enumerate() {
        let dir = tmp.path().join(format!("kill-{round}"));
        let mut child = spawn_smc2(&job, &dir, &flags);
        let victim = round % 2;
        // The first observation step's checkpoint, then a random delay.
        let t = Instant::now();
        while !dir.join("smc2-checkpoint.json").exists() && child.try_wait().unwrap().is_none() {
            assert!(t.elapsed() < Duration::from_secs(180), "no checkpoint");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(d);
        if child.try_wait().unwrap().is_some()
            || !wait_for_running_task(&mut cluster, victim, &mut child, Duration::from_millis(5))
        {
            let _ = finish(&mut child, Duration::from_secs(60));
            continue; // finished first: try again
        }
        cluster.executors()[victim].kill();
        let (status, err) = finish(&mut child, Duration::from_secs(600));
        assert!(
            status.success(),
            "SMC² run after killing an executor: {status:?}\n{err}\n{}",
            cluster.logs()
        );
        assert!(smc2_bytes(&dir) == expected, "round {round}: bytes changed");
        killed = true;
        break;
    }
    assert!(killed, "no executor kill landed while a task ran");
}
