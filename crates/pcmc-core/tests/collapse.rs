//! Total weight collapse gives −∞, the proposal is rejected, and no NaN ever
//! reaches the chain.

use pcmc_core::filter::FilterConfig;
use pcmc_core::prelude::*;
use pcmc_core::{LikelihoodExecutor, serial};

fn lv_prey_data(
    values: &[f64],
    means: Vec<f64>,
    caps: Vec<u64>,
    particles: usize,
) -> FilterProblem {
    let net = Network::lotka_volterra(1).unwrap();
    let times: Vec<f64> = (0..values.len()).map(|i| i as f64).collect();
    let rows = values.iter().map(|v| vec![*v]).collect();
    let data = Data::new(&net, times, &["prey".to_string()], rows).unwrap();
    let mut cfg = FilterConfig::new(particles, 2);
    cfg.caps = caps;
    FilterProblem::new(
        net.clone(),
        data,
        ObservationModel::Poisson,
        InitialPrior::new(&net, means).unwrap(),
        0.0,
        cfg,
    )
    .unwrap()
}

fn priors() -> Vec<Prior> {
    vec![
        Prior::LogUniform {
            lower: 1e-2,
            upper: 1e2,
        },
        Prior::LogUniform {
            lower: 5e-5,
            upper: 0.5,
        },
        Prior::LogUniform {
            lower: 6e-3,
            upper: 60.0,
        },
    ]
}

fn config(iterations: u64, init: Vec<f64>) -> PmmhConfig {
    PmmhConfig {
        seed: 3,
        chains: 1,
        burn_in: 0,
        iterations,
        thin: 1,
        init,
        start: StartPoints::Fixed,
        proposal: ProposalCovariance::Diagonal(vec![0.5; 3]),
        // These tests are about the −∞ paths: early rejection would stop
        // many hopeless passes before they collapse.
        early_rejection: false,
        checks: pcmc_core::tuning::ChainChecks::off(),
        adapt: None,
    }
}

#[test]
fn impossible_data_collapse_to_minus_infinity() {
    // No prey ever: a positive Poisson count is impossible.
    let p = lv_prey_data(&[0.0, 5.0, 3.0], vec![0.0, 10.0], vec![1_000_000; 2], 100);
    let out = serial()
        .log_likelihood(
            &p,
            &[1.0, 0.005, 0.6],
            FilterKey {
                seed: 1,
                chain: 0,
                iteration: 0,
            },
        )
        .unwrap();
    assert_eq!(out.loglik, f64::NEG_INFINITY);
    assert_eq!(out.collapsed_at, Some(1));
    let pmmh = Pmmh::new(p, priors(), config(30, vec![1.0, 0.005, 0.6])).unwrap();
    let mut rows = Vec::new();
    pmmh.run(&mut serial(), |rec, _| {
        rows.push(rec.clone());
        Ok(())
    })
    .unwrap();
    assert_eq!(rows.len(), 31);
    for r in &rows[1..] {
        assert!(!r.accepted, "a −∞ proposal was accepted");
        assert_eq!(r.loglik, f64::NEG_INFINITY);
        assert!(r.theta.iter().all(|t| t.is_finite()));
    }
}

#[test]
fn capped_proposals_are_rejected_without_nan() {
    // Tight caps: large birth rates push every particle over the cap.
    let p = lv_prey_data(
        &[50.0, 60.0, 55.0, 70.0],
        vec![50.0, 100.0],
        vec![400, 400],
        64,
    );
    let pmmh = Pmmh::new(p, priors(), config(200, vec![1.0, 0.005, 0.6])).unwrap();
    let mut collapsed = 0;
    let mut accepted = 0;
    let states = pmmh
        .run(&mut serial(), |rec, _| {
            assert!(!rec.loglik.is_nan());
            assert!(rec.theta.iter().all(|t| t.is_finite() && *t > 0.0));
            if let Some(f) = &rec.filter {
                assert!(!f.loglik.is_nan());
                if f.loglik == f64::NEG_INFINITY {
                    collapsed += 1;
                    assert!(!rec.accepted || rec.iteration == 0);
                }
            }
            accepted += u64::from(rec.accepted && rec.iteration > 0);
            Ok(())
        })
        .unwrap();
    assert!(collapsed > 0, "the test should provoke collapses");
    assert!(accepted > 0);
    assert!(states[0].counters.cap_hits > 0);
    assert_eq!(states[0].collapses, collapsed);
}

#[test]
fn extreme_theta_never_nan() {
    let p = lv_prey_data(&[50.0, 60.0], vec![50.0, 100.0], vec![1_000_000; 2], 64);
    let mut exec = serial();
    for theta in [
        [1e300, 1e300, 1e300],
        [1e-300, 1e-300, 1e-300],
        [1e300, 1e-300, 1.0],
        [f64::INFINITY, 1.0, 1.0],
        [f64::NAN, 1.0, 1.0],
        [-1.0, 1.0, 1.0],
    ] {
        let out = exec
            .log_likelihood(
                &p,
                &theta,
                FilterKey {
                    seed: 1,
                    chain: 0,
                    iteration: 0,
                },
            )
            .unwrap();
        assert!(!out.loglik.is_nan(), "{theta:?}");
    }
}

/// The data-derived cap (100 × the largest observation) stops only
/// trajectories whose weight is zero anyway: on lv11 at the true θ the
/// log-likelihood estimates are bit-identical to those under a 10^6 cap.
#[test]
fn data_derived_cap_leaves_estimates_unchanged() {
    use pcmc_core::filter::{DEFAULT_CAP, data_caps};
    use pcmc_core::workloads::lv11;
    let loose = lv11(100, 2018);
    let mut cfg = loose.config().clone();
    cfg.caps = data_caps(loose.network(), loose.observations());
    assert!(
        cfg.caps[0] < DEFAULT_CAP,
        "the prey cap should come from the data"
    );
    assert_eq!(
        cfg.caps[1], DEFAULT_CAP,
        "the unobserved predator keeps the default"
    );
    let tight = loose.with_config(cfg).unwrap();
    let mut exec = serial();
    let (mut hits, mut saved) = (0, 0);
    // Parameters near the truth, and far from it where predators die out and
    // the prey explodes into the cap.
    for (i, theta) in [[1.0, 0.005, 0.6], [0.8, 0.006, 0.5], [1.0, 0.002, 1.5]]
        .iter()
        .enumerate()
    {
        for it in 0..3 {
            let key = FilterKey {
                seed: 3,
                chain: i as u64,
                iteration: it,
            };
            let a = exec.log_likelihood(&loose, theta, key).unwrap();
            let b = exec.log_likelihood(&tight, theta, key).unwrap();
            assert_eq!(
                a.loglik.to_bits(),
                b.loglik.to_bits(),
                "θ = {theta:?}, key {it}"
            );
            assert!(b.counters.events <= a.counters.events);
            hits += b.counters.cap_hits;
            saved += a.counters.events - b.counters.events;
        }
    }
    assert!(
        hits > 0,
        "the test should make some particles hit the data-derived cap"
    );
    assert!(saved > 0);
}
