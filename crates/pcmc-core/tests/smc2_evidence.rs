//! SMC² against an exact evidence and an exact posterior.
//!
//! Immigration–death has an exact likelihood (forward algorithm, `common`),
//! so the evidence `Z = ∫ p(y | θ) p(θ) dθ` and the posterior of (ln λ, ln μ)
//! follow by quadrature on a grid. SMC²'s `Ẑ` is unbiased on the natural
//! scale: over independent runs the mean of `Ẑ/Z` must be 1 within its Monte
//! Carlo error, and the runs' weighted posterior means must agree with the
//! grid's.

mod common;

use common::id_priors as priors;
use pcmc_core::prelude::*;
use pcmc_core::smc2::{SerialPasses, Smc2, Smc2Config};

#[test]
fn smc2_evidence_is_unbiased_and_its_posterior_matches_the_grid() {
    let times: Vec<f64> = (1..=10).map(|i| 0.5 * f64::from(i)).collect();
    let obs = ObservationModel::Gaussian { sd: vec![2.0] };
    let problem = common::id_problem(&[10.0, 0.5], times, obs, 50, 3);
    let common::Grid {
        log_z, mean, sd, ..
    } = common::grid_posterior(&problem);
    eprintln!("grid: log Z {log_z:.4}, mean {mean:?}, sd {sd:?}");
    let runs = 40;
    let mut ratios = Vec::new();
    let mut means = Vec::new();
    for r in 0..runs {
        let smc2 = Smc2::new(
            problem.clone(),
            priors(),
            Smc2Config {
                seed: 1000 + r,
                theta_particles: 800,
                ess_threshold: 0.5,
                moves: 2,
            },
        )
        .unwrap();
        let out = smc2.run(&mut SerialPasses::default()).unwrap();
        ratios.push((out.log_evidence - log_z).exp());
        let w = out.weights();
        let m = |p: usize| -> f64 {
            w.iter()
                .zip(&out.particles)
                .map(|(w, q)| w * q.theta[p].ln())
                .sum()
        };
        means.push([m(0), m(1)]);
    }
    let avg = ratios.iter().sum::<f64>() / runs as f64;
    let se = (ratios.iter().map(|x| (x - avg).powi(2)).sum::<f64>() / (runs - 1) as f64).sqrt()
        / (runs as f64).sqrt();
    eprintln!("Ẑ/Z: mean {avg:.4} ± {se:.4} over {runs} runs; {ratios:.3?}");
    // Power: the runs must pin the ratio down to a few per cent.
    assert!(se < 0.05, "Ẑ/Z too noisy to test: se {se}");
    assert!((avg - 1.0).abs() < 3.0 * se, "E[Ẑ/Z] = {avg} ± {se}, not 1");
    for p in 0..2 {
        let xs: Vec<f64> = means.iter().map(|m| m[p]).collect();
        let a = xs.iter().sum::<f64>() / runs as f64;
        let s = (xs.iter().map(|x| (x - a).powi(2)).sum::<f64>() / (runs - 1) as f64).sqrt();
        let se = s / (runs as f64).sqrt();
        eprintln!(
            "parameter {p}: mean of run means {a:.4} ± {se:.4} (run sd {s:.4}), grid {:.4}",
            mean[p]
        );
        // A self-normalised estimate is biased by O(1/Nθ): measured here
        // 0.038 posterior sd at Nθ = 200 and under 0.01 at 800. 0.03 sd
        // covers it with room.
        assert!(
            (a - mean[p]).abs() < 4.0 * se + 0.03 * sd[p],
            "parameter {p}: {a} ± {se} against the grid's {}",
            mean[p]
        );
    }
}
