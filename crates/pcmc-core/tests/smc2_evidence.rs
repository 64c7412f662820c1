//! SMC² against an exact evidence and an exact posterior.
//!
//! Immigration–death has an exact likelihood (forward algorithm, `common`),
//! so the evidence `Z = ∫ p(y | θ) p(θ) dθ` and the posterior of (ln λ, ln μ)
//! follow by quadrature on a grid. SMC²'s `Ẑ` is unbiased on the natural
//! scale: over independent runs the mean of `Ẑ/Z` must be 1 within its Monte
//! Carlo error, the runs' weighted posterior means must agree with the
//! grid's, and the one-run standard error of `log Ẑ` (Lee–Whiteley) must
//! match the spread of `log Ẑ` over the runs.

mod common;

use common::id_priors as priors;
use pcmc_core::prelude::*;
use pcmc_core::smc2::{ExchangeRule, SerialPasses, Smc2, Smc2Config};

/// What `runs` independent runs gave.
struct Runs {
    /// `Ẑ/Z` per run.
    ratios: Vec<f64>,
    /// `(log Ẑ − log Z) / se` per run.
    z: Vec<f64>,
    /// Weighted posterior means of (ln λ, ln μ) per run.
    means: Vec<[f64; 2]>,
    /// Runs with an exchange step.
    exchanged: usize,
}

fn run_many(problem: &FilterProblem, log_z: f64, runs: u64, config: &Smc2Config) -> Runs {
    let mut out = Runs {
        ratios: Vec::new(),
        z: Vec::new(),
        means: Vec::new(),
        exchanged: 0,
    };
    for r in 0..runs {
        let smc2 = Smc2::new(
            problem.clone(),
            priors(),
            Smc2Config {
                seed: config.seed + r,
                ..config.clone()
            },
        )
        .unwrap();
        let o = smc2.run(&mut SerialPasses::default()).unwrap();
        out.ratios.push((o.log_evidence - log_z).exp());
        out.z.push((o.log_evidence - log_z) / o.log_evidence_se);
        if o.steps.iter().any(|s| s.exchange_log_increment.is_some()) {
            out.exchanged += 1;
        }
        let w = o.weights();
        let m = |p: usize| -> f64 {
            w.iter()
                .zip(&o.particles)
                .map(|(w, q)| w * q.theta[p].ln())
                .sum()
        };
        out.means.push([m(0), m(1)]);
    }
    out
}

fn mean_se(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let a = xs.iter().sum::<f64>() / n;
    let s = (xs.iter().map(|x| (x - a).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    (a, s / n.sqrt())
}

#[test]
fn smc2_evidence_is_unbiased_its_se_is_calibrated_and_its_posterior_matches_the_grid() {
    let times: Vec<f64> = (1..=10).map(|i| 0.5 * f64::from(i)).collect();
    let obs = ObservationModel::Gaussian { sd: vec![2.0] };
    let problem = common::id_problem(&[10.0, 0.5], times, obs, 50, 3);
    let common::Grid {
        log_z, mean, sd, ..
    } = common::grid_posterior(&problem);
    eprintln!("grid: log Z {log_z:.4}, mean {mean:?}, sd {sd:?}");
    // A: the defaults (independent proposal), Nx = 50: no exchange.
    // B: Nx = 12 with the exchange step below 60 % acceptance: Nx doubles
    //    in most runs (38 of 40 when written), so the exchange's weights and
    //    evidence factor are exercised; and a final resample-move, so the
    //    posterior means are those of the moved, equally weighted cloud.
    let a = run_many(
        &problem,
        log_z,
        40,
        &Smc2Config {
            seed: 1000,
            theta_particles: 800,
            moves: 2,
            ..Smc2Config::default()
        },
    );
    let b = run_many(
        &problem.with_particles(12).unwrap(),
        log_z,
        40,
        &Smc2Config {
            seed: 2000,
            theta_particles: 800,
            moves: 2,
            exchange_below: Some(0.6),
            exchange_rule: ExchangeRule::Acceptance,
            final_move: true,
            ..Smc2Config::default()
        },
    );
    assert!(
        b.exchanged >= 30,
        "only {} of 40 runs exchanged: B would not test the exchange",
        b.exchanged
    );
    for (name, r, power) in [("A", &a, 0.02), ("B", &b, 0.025)] {
        let (avg, se) = mean_se(&r.ratios);
        eprintln!(
            "{name}: Ẑ/Z mean {avg:.4} ± {se:.4} over {} runs ({} with an exchange)",
            r.ratios.len(),
            r.exchanged
        );
        // Power: the runs must pin the ratio down to a few per cent.
        assert!(se < power, "{name}: Ẑ/Z too noisy to test: se {se}");
        assert!(
            (avg - 1.0).abs() < 3.0 * se,
            "{name}: E[Ẑ/Z] = {avg} ± {se}, not 1"
        );
        for p in 0..2 {
            let xs: Vec<f64> = r.means.iter().map(|m| m[p]).collect();
            let (m, se) = mean_se(&xs);
            eprintln!(
                "{name}: parameter {p}: mean of run means {m:.4} ± {se:.4}, grid {:.4}",
                mean[p]
            );
            // A self-normalised estimate is biased by O(1/Nθ): measured
            // 0.038 posterior sd at Nθ = 200 and under 0.01 at 800. 0.03 sd
            // covers it with room.
            assert!(
                (m - mean[p]).abs() < 4.0 * se + 0.03 * sd[p],
                "{name}: parameter {p}: {m} ± {se} against the grid's {}",
                mean[p]
            );
        }
    }
    // The standard error: if it is right, (log Ẑ − log Z)/se has variance
    // ≈ 1, so the mean of its square over the 80 runs is ≈ 1 with sd
    // ≈ √(2/80) = 0.16 (more with heavy tails). [0.55, 1.8] is ~2.8 sd
    // below and 5 above; an SE off by 1.35× either way fails.
    let z2 = a.z.iter().chain(&b.z).map(|z| z * z).sum::<f64>() / 80.0;
    eprintln!("mean of ((log Ẑ − log Z)/se)² over 80 runs: {z2:.3}");
    assert!(
        (0.55..=1.8).contains(&z2),
        "the standard error of log Ẑ is off: mean z² {z2}"
    );
}

/// The calibration behind [`pcmc_core::smc2::MIN_EFFECTIVE_EVES`]: runs of
/// immigration–death over a range of Nθ and Nx (so of effective Eves),
/// each run's `z = (log Ẑ − log Z)/se` binned by its effective Eves; the
/// mean z² and the coverage of |z| ≤ 2 per bin show where a run's own
/// standard error stops being honest. Run with `--ignored --nocapture`.
#[test]
#[ignore = "a calibration study (minutes): run by hand"]
fn calibration_of_the_effective_eve_threshold() {
    let times: Vec<f64> = (1..=20).map(|i| 0.5 * f64::from(i)).collect();
    let obs = ObservationModel::Gaussian { sd: vec![2.0] };
    let problem = common::id_problem(&[10.0, 0.5], times, obs, 50, 3);
    let common::Grid { log_z, .. } = common::grid_posterior(&problem);
    let mut rows: Vec<(f64, f64)> = Vec::new();
    let mut seed = 50_000;
    for (nth, nx) in [
        (50, 10),
        (100, 10),
        (100, 25),
        (200, 10),
        (200, 25),
        (400, 25),
        (800, 50),
    ] {
        for _ in 0..40 {
            seed += 1;
            let smc2 = Smc2::new(
                problem.with_particles(nx).unwrap(),
                priors(),
                Smc2Config {
                    seed,
                    theta_particles: nth,
                    moves: 2,
                    exchange_below: None,
                    ..Smc2Config::default()
                },
            )
            .unwrap();
            let o = smc2.run(&mut SerialPasses::default()).unwrap();
            let last = o.steps.last().unwrap();
            let se = last.relative_variance.max(0.0).sqrt();
            let z = if se > 0.0 {
                (o.log_evidence - log_z) / se
            } else {
                f64::INFINITY
            };
            rows.push((last.effective_eves, z));
        }
    }
    let bins = [0.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0, f64::INFINITY];
    for w in bins.windows(2) {
        let zs: Vec<f64> = rows
            .iter()
            .filter(|(e, _)| *e >= w[0] && *e < w[1])
            .map(|r| r.1)
            .collect();
        if zs.is_empty() {
            continue;
        }
        let z2 = zs.iter().map(|z| z * z).sum::<f64>() / zs.len() as f64;
        let cover = zs.iter().filter(|z| z.abs() <= 2.0).count() as f64 / zs.len() as f64;
        eprintln!(
            "effective Eves [{}, {}): {} runs, mean z² {z2:.2}, |z| ≤ 2 in {:.0} %",
            w[0],
            w[1],
            zs.len(),
            100.0 * cover
        );
    }
}

/// One seed of the calibration: the run's own error where it says it is
/// reliable, else `replicates` independent replicates (replicate 0 the run
/// itself) combined. Returns `(z, reliable, used replicates)`.
fn calibrated_z(
    problem: &FilterProblem,
    log_z: f64,
    config: &Smc2Config,
    replicates: u32,
) -> (f64, bool, bool) {
    use pcmc_core::smc2::replicates::combine;
    let run = |r: u32| {
        Smc2::new(
            problem.clone(),
            priors(),
            Smc2Config {
                replicate: r,
                ..config.clone()
            },
        )
        .unwrap()
        .run(&mut SerialPasses::default())
        .unwrap()
    };
    let first = run(0);
    let last = first.steps.last().unwrap();
    if last.se_reliable() {
        return (
            (first.log_evidence - log_z) / first.log_evidence_se,
            true,
            false,
        );
    }
    let mut log_zs = vec![first.log_evidence];
    log_zs.extend((1..replicates).map(|r| run(r).log_evidence));
    let c = combine(&log_zs);
    (
        (c.log_evidence - log_z) / c.log_evidence_se,
        c.se_reliable(),
        true,
    )
}

/// The calibration of the reported error over 60 seeds: immigration–death
/// (20 observations, exact evidence) with settings too small for one run
/// to see its own error (Nθ 100, Nx 10: 57 of the 60 runs flag their SE
/// as unreliable when written), so each such seed runs 8 replicates and
/// reports their combined evidence and error. The error used is the
/// reported one: a run's own where reliable, else the replicates'.
///
/// With the replicate error's 7 degrees of freedom, `z = (log Ẑ − log Z)/SE`
/// is about Student-t: `E[z²] = 7/5 = 1.4` and `P(|z| ≤ 2) = 0.91`. Written:
/// coverage 95 %, mean z² 1.24, 60 of 60 with a reliable error.
/// Deliberate bugs fail it: counting raw instead of effective Eves in
/// `se_reliable` (1 seed of 60 then asks for replicates: the test needs
/// 40; on this short series the single runs' errors then still cover 95 %,
/// mean z² 1.30), and replicates that share one stream (their spread and
/// error are 0: coverage 3.3 %).
#[test]
fn the_reported_evidence_error_covers_the_exact_evidence() {
    let times: Vec<f64> = (1..=20).map(|i| 0.5 * f64::from(i)).collect();
    let obs = ObservationModel::Gaussian { sd: vec![2.0] };
    let problem = common::id_problem(&[10.0, 0.5], times, obs, 50, 3);
    let common::Grid { log_z, .. } = common::grid_posterior(&problem);
    let problem = problem.with_particles(10).unwrap();
    let (mut zs, mut unreliable, mut via_replicates) = (Vec::new(), 0, 0);
    for s in 0..60 {
        let (z, reliable, replicated) = calibrated_z(
            &problem,
            log_z,
            &Smc2Config {
                seed: 70_000 + s,
                theta_particles: 100,
                moves: 2,
                exchange_below: None,
                ..Smc2Config::default()
            },
            8,
        );
        via_replicates += usize::from(replicated);
        if reliable {
            zs.push(z);
        } else {
            unreliable += 1;
        }
    }
    let n = zs.len() as f64;
    let z2 = zs.iter().map(|z| z * z).sum::<f64>() / n;
    let cover = zs.iter().filter(|z| z.abs() <= 2.0).count() as f64 / n;
    eprintln!(
        "{} seeds with a reliable error ({via_replicates} via replicates), {unreliable} without; \
         mean z² {z2:.3}, |z| ≤ 2 in {:.1} %",
        zs.len(),
        100.0 * cover
    );
    assert!(
        via_replicates >= 40,
        "only {via_replicates} seeds needed replicates: the test would not test them"
    );
    assert!(
        unreliable <= 6,
        "{unreliable} of 60 seeds ended without a reliable error"
    );
    assert!(
        (0.90..=0.99).contains(&cover),
        "2 reported SEs cover the exact log evidence in {:.1} % of the seeds",
        100.0 * cover
    );
    assert!(
        (0.6..=1.8).contains(&z2),
        "mean z² {z2}: the reported errors do not match the actual ones"
    );
}
