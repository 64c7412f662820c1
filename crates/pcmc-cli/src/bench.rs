//! `pcmc bench compare`: complete `pcmc run`s of one job, one process (or
//! one `mpirun`/`srun`) per run, for each executor and worker count,
//! alternating executors (A B C A B C …) so that a noisy machine penalises
//! them alike. Writes `bench.csv` (every run), `bench.md` (medians, speedup,
//! parallel efficiency, events/s, peak RSS, bytes moved, stage breakdown)
//! and `bench.svg` (median wall time against workers), and checks that every
//! run wrote the same chain. `ballista` runs the dataflow executor on a
//! Ballista cluster started here for the purpose: a scheduler and W
//! executors with one slot each on 127.0.0.1; its stage breakdown includes
//! `scheduling`, the time from a job's submission to its first task.

use crate::error::{InputError, input};
use crate::fsio::write_atomic;
use crate::run::{Overrides, prepare};
use anyhow::{Context, Result};
use plotters::prelude::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Settings of `pcmc bench compare` (its command-line arguments).
#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// The job file (TOML).
    pub job: PathBuf,
    /// Executors to compare (comma-separated: rayon, mpi, dataflow, ballista, serial).
    #[arg(long, value_delimiter = ',', default_value = "rayon")]
    pub executors: Vec<String>,
    /// Worker counts (threads, MPI ranks or partitions; comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub workers: Vec<usize>,
    /// Runs per executor and worker count (medians are reported).
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Output directory (default `runs/<name>-bench`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Extra `pcmc run` flags for every run, after `--` (e.g. `-- --particles 200`).
    #[arg(last = true)]
    pub extra: Vec<String>,
}

/// The stages reported in `summary.json`, in display order.
const STAGES: [&str; 8] = [
    "propagate",
    "weight",
    "resample",
    "communicate",
    "planning",
    "reduce",
    "shuffle",
    "scheduling",
];

/// One run's measurements.
#[derive(Debug, Clone)]
struct Record {
    executor: String,
    workers: usize,
    repeat: usize,
    /// Wall time of the whole process (launch to exit), seconds.
    wall: f64,
    /// pcmc's own wall time of the chain loop.
    run_wall: f64,
    events: f64,
    peak_rss: f64,
    bytes_moved: f64,
    stages: Vec<f64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        0.5 * (v[m - 1] + v[m])
    }
}

fn compiled(executor: &str) -> bool {
    let mut available = vec!["rayon", "serial"];
    if cfg!(feature = "mpi") {
        available.push("mpi");
    }
    if cfg!(feature = "dataflow") {
        available.push("dataflow");
    }
    if cfg!(feature = "ballista") {
        available.push("ballista");
    }
    available.contains(&executor)
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// The command for one run, as a user would launch it.
fn command(
    exe: &Path,
    executor: &str,
    workers: usize,
    job: &Path,
    dir: &Path,
    extra: &[String],
    cluster: Option<&[String]>,
) -> Command {
    let w = workers.to_string();
    let mut cmd = if executor == "mpi" {
        let mut c = if std::env::var_os("SLURM_JOB_ID").is_some() && on_path("srun") {
            let mut c = Command::new("srun");
            c.args(["-n", &w, "--mpi=pmix"]);
            c
        } else {
            let mut c = Command::new("mpirun");
            c.args(["-n", &w, "--oversubscribe"]);
            c
        };
        c.arg(exe);
        c
    } else {
        Command::new(exe)
    };
    cmd.arg("run").arg(job);
    match (executor, cluster) {
        ("ballista", Some(flags)) => cmd
            .args(["--executor", "dataflow", "--partitions", &w])
            .args(flags),
        ("mpi", _) => cmd.args(["--executor", executor, "--threads", "1"]),
        ("dataflow", _) => cmd.args(["--executor", executor, "--threads", &w, "--partitions", &w]),
        _ => cmd.args(["--executor", executor, "--threads", &w]),
    };
    cmd.arg("--out").arg(dir).arg("--quiet").args(extra);
    cmd
}

/// `pcmc bench compare` (see the module docs).
///
/// # Errors
/// Input errors for the job, executors not compiled in or lists that are
/// empty; a failed run.
pub fn compare(args: &CompareArgs) -> Result<()> {
    let prep = prepare(&args.job, &Overrides::default())?;
    if args.executors.is_empty() || args.workers.is_empty() {
        return Err(InputError::flag("--executors/--workers", "give at least one of each").into());
    }
    for e in &args.executors {
        if !matches!(
            e.as_str(),
            "rayon" | "serial" | "mpi" | "dataflow" | "ballista"
        ) {
            return Err(InputError::flag(
                "--executors",
                format!("{e:?} is not one of rayon, mpi, dataflow, ballista, serial"),
            )
            .into());
        }
        if !compiled(e) {
            return Err(InputError::flag(
                "--executors",
                format!("the {e} executor is not compiled into this pcmc (cargo feature `{e}`)"),
            )
            .into());
        }
        if e == "mpi" && !on_path("mpirun") && !on_path("srun") {
            return Err(
                InputError::flag("--executors", "mpi needs `mpirun` or `srun` on PATH").into(),
            );
        }
    }
    if args.workers.contains(&0) {
        return Err(InputError::flag("--workers", "must be at least 1").into());
    }
    if args.repeat == 0 {
        return Err(InputError::flag("--repeat", "must be at least 1").into());
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(format!("{}-bench", prep.job.name)));
    std::fs::create_dir_all(&out)
        .map_err(|e| input(&out, format!("cannot create the output directory: {e}")))?;
    let exe = std::env::current_exe().context("cannot find the pcmc binary")?;
    let mut records = Vec::new();
    let mut chains: Vec<(String, Vec<u8>)> = Vec::new();
    let total = args.repeat * args.workers.len() * args.executors.len();
    // Ballista: W executors with one slot each on this machine, one cluster
    // per worker count, kept up for every repeat.
    let mut clusters: BTreeMap<usize, crate::cluster::LocalCluster> = BTreeMap::new();
    for r in 0..args.repeat {
        for &w in &args.workers {
            for e in &args.executors {
                let dir = out.join("runs").join(format!("{e}-w{w}-r{r}"));
                let _ = std::fs::remove_dir_all(&dir);
                let cluster = if e == "ballista" {
                    let c = match clusters.entry(w) {
                        std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                        std::collections::btree_map::Entry::Vacant(v) => {
                            v.insert(crate::cluster::LocalCluster::start(
                                &exe,
                                &out.join("cluster").join(format!("w{w}")),
                                w,
                            )?)
                        }
                    };
                    Some(c.run_flags())
                } else {
                    None
                };
                let mut cmd = command(&exe, e, w, &args.job, &dir, &args.extra, cluster.as_deref());
                if e == "mpi" {
                    cmd.env("OMPI_ALLOW_RUN_AS_ROOT", "1")
                        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
                }
                let t = Instant::now();
                let result = cmd
                    .output()
                    .with_context(|| format!("cannot start {cmd:?}"))?;
                let wall = t.elapsed().as_secs_f64();
                if !result.status.success() {
                    let err = String::from_utf8_lossy(&result.stderr);
                    anyhow::bail!(
                        "{e} with {w} worker(s) failed ({}):\n{}",
                        result.status,
                        err.lines()
                            .rev()
                            .take(20)
                            .collect::<Vec<_>>()
                            .into_iter()
                            .rev()
                            .collect::<Vec<_>>()
                            .join("\n")
                    );
                }
                let summary: Value = serde_json::from_str(
                    &std::fs::read_to_string(dir.join("summary.json"))
                        .with_context(|| format!("{}: no summary.json", dir.display()))?,
                )?;
                let f = |k: &str| summary[k].as_f64().unwrap_or(f64::NAN);
                let rec = Record {
                    executor: e.clone(),
                    workers: w,
                    repeat: r,
                    wall,
                    run_wall: f("wall_seconds"),
                    events: f("ssa_events"),
                    peak_rss: summary["peak_rss_bytes_all"]
                        .as_f64()
                        .filter(|x| *x > 0.0)
                        .unwrap_or_else(|| f("peak_rss_bytes")),
                    bytes_moved: f("bytes_moved"),
                    stages: STAGES
                        .iter()
                        .map(|s| summary["stages"][s].as_f64().unwrap_or(0.0))
                        .collect(),
                };
                eprintln!("[{}/{total}] {e} × {w}: {wall:.2} s", records.len() + 1);
                chains.push((
                    format!("{e}-w{w}-r{r}"),
                    std::fs::read(dir.join("chain.csv"))?,
                ));
                records.push(rec);
            }
        }
    }
    let identical = chains.windows(2).all(|p| p[0].1 == p[1].1);
    write_outputs(&out, &prep.job.name, args, &records, identical)?;
    if !identical {
        let first = &chains[0];
        let odd: Vec<&str> = chains
            .iter()
            .filter(|c| c.1 != first.1)
            .map(|c| c.0.as_str())
            .collect();
        anyhow::bail!(
            "the runs wrote different chains (determinism contract broken): {} differ from {}",
            odd.join(", "),
            first.0
        );
    }
    Ok(())
}

fn write_outputs(
    out: &Path,
    name: &str,
    args: &CompareArgs,
    records: &[Record],
    identical: bool,
) -> Result<()> {
    let mut csv = String::from(
        "executor,workers,repeat,wall_seconds,run_wall_seconds,ssa_events,events_per_second,peak_rss_bytes,bytes_moved",
    );
    for s in STAGES {
        write!(csv, ",{s}_seconds")?;
    }
    csv.push('\n');
    for r in records {
        write!(
            csv,
            "{},{},{},{},{},{},{},{},{}",
            r.executor,
            r.workers,
            r.repeat,
            r.wall,
            r.run_wall,
            r.events,
            r.events / r.wall,
            r.peak_rss,
            r.bytes_moved
        )?;
        for s in &r.stages {
            write!(csv, ",{s}")?;
        }
        csv.push('\n');
    }
    write_atomic(&out.join("bench.csv"), csv.as_bytes())?;

    // Medians per (executor, workers), in the order given.
    let mut groups: BTreeMap<(usize, usize), Vec<&Record>> = BTreeMap::new();
    for r in records {
        let e = args
            .executors
            .iter()
            .position(|x| *x == r.executor)
            .unwrap_or(0);
        let w = args
            .workers
            .iter()
            .position(|x| *x == r.workers)
            .unwrap_or(0);
        groups.entry((e, w)).or_default().push(r);
    }
    let med =
        |rs: &[&Record], f: &dyn Fn(&Record) -> f64| median(rs.iter().map(|r| f(r)).collect());
    let mut md = format!(
        "# pcmc bench compare: {name}\n\n{} run(s) per cell, executors alternated; medians. \
         Speedup is over the same executor with 1 worker; efficiency = speedup / workers. \
         Peak RSS: all processes together. Chains of all runs identical: {}.\n\n\
         | executor | workers | wall s | speedup | efficiency | events/s | peak RSS MiB | bytes moved | stages (s) |\n\
         |---|---|---|---|---|---|---|---|---|\n",
        args.repeat,
        if identical { "yes" } else { "NO" }
    );
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for (ei, e) in args.executors.iter().enumerate() {
        let base = groups
            .iter()
            .find(|((x, _), rs)| *x == ei && rs[0].workers == 1)
            .map(|(_, rs)| med(rs, &|r| r.wall));
        let mut pts = Vec::new();
        for ((x, _), rs) in groups.iter().filter(|((x, _), _)| *x == ei) {
            debug_assert_eq!(*x, ei);
            let w = rs[0].workers;
            let wall = med(rs, &|r| r.wall);
            pts.push((w as f64, wall));
            let (speedup, eff) = match base {
                Some(b) if wall > 0.0 => (
                    format!("{:.2}", b / wall),
                    format!("{:.2}", b / wall / w as f64),
                ),
                _ => ("-".into(), "-".into()),
            };
            let stages: Vec<String> = STAGES
                .iter()
                .enumerate()
                .filter_map(|(i, s)| {
                    let v = med(rs, &|r| r.stages[i]);
                    (v > 0.0005).then(|| format!("{s} {v:.3}"))
                })
                .collect();
            writeln!(
                md,
                "| {e} | {w} | {wall:.3} | {speedup} | {eff} | {:.3e} | {:.1} | {:.0} | {} |",
                med(rs, &|r| r.events / r.wall),
                med(rs, &|r| r.peak_rss) / 1048576.0,
                med(rs, &|r| r.bytes_moved),
                stages.join(", ")
            )?;
        }
        series.push((e.clone(), pts));
    }
    write_atomic(&out.join("bench.md"), md.as_bytes())?;
    print!("{md}");
    plot(&out.join("bench.svg"), name, &series)?;
    Ok(())
}

fn plot(path: &Path, name: &str, series: &[(String, Vec<(f64, f64)>)]) -> Result<()> {
    const COLOURS: [RGBColor; 4] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
    ];
    let all: Vec<(f64, f64)> = series.iter().flat_map(|s| s.1.iter().copied()).collect();
    let x1 = all.iter().map(|p| p.0).fold(1.0, f64::max) + 0.5;
    let y1 = all
        .iter()
        .map(|p| p.1)
        .filter(|y| y.is_finite())
        .fold(0.0, f64::max)
        * 1.15;
    let root = SVGBackend::new(path, (640, 400)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut c = ChartBuilder::on(&root)
        .caption(format!("{name}: median wall time"), ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(50)
        .build_cartesian_2d(0.5..x1, 0.0..y1.max(1e-9))?;
    c.configure_mesh()
        .x_desc("workers")
        .y_desc("seconds")
        .light_line_style(WHITE)
        .draw()?;
    for (i, (e, pts)) in series.iter().enumerate() {
        let col = COLOURS[i % COLOURS.len()];
        c.draw_series(LineSeries::new(pts.clone(), col.stroke_width(2)))?
            .label(e.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], col.stroke_width(2)));
        c.draw_series(pts.iter().map(|p| Circle::new(*p, 4, col.filled())))?;
    }
    c.configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;
    root.present()?;
    Ok(())
}
