//! Burn-in checks ([`pcmc_core::tuning`]): a chain stuck on a lucky
//! overestimate is found and given a fresh estimate; an adapted particle
//! count lands where the estimate's sd is near its target; a chain far below
//! the others in the relocation window is moved, one within the χ² gap is
//! not.
use pcmc_core::prelude::*;
use pcmc_core::serial;
use pcmc_core::tuning::{AutoParticles, ChainChecks, Spread};
use pcmc_core::workloads::{log_uniform_priors, lv11};

const TRUTH: [f64; 3] = [1.0, 0.005, 0.6];

fn sampler(particles: usize, burn_in: u64, chains: usize, checks: ChainChecks) -> Pmmh {
    Pmmh::new(
        lv11(particles, 2018),
        log_uniform_priors(&TRUTH, 100.0),
        PmmhConfig {
            seed: 5,
            chains,
            burn_in,
            iterations: 1,
            thin: 1,
            init: TRUTH.to_vec(),
            start: StartPoints::Fixed,
            proposal: ProposalCovariance::Diagonal(vec![0.03; 3]),
            adapt: None,
            early_rejection: true,
            checks,
        },
    )
    .unwrap()
}

/// A chain at the truth whose estimate was inflated by 30 (e^30: no honest
/// proposal's estimate comes near), run for 150 burn-in iterations: the
/// proposals it accepted, and the state.
fn inflated_chain(checks: ChainChecks) -> (u64, ChainState) {
    let pmmh = sampler(100, 1000, 1, checks);
    let mut exec = serial();
    let (mut st, _) = pmmh.init_chain(&mut exec, 0).unwrap();
    st.loglik += 30.0;
    for _ in 0..150 {
        pmmh.step(&mut exec, &mut st).unwrap();
    }
    (st.accepted, st)
}

#[test]
fn a_chain_stuck_on_an_overestimate_is_found_and_moves_again() {
    // Without checks the chain never moves: the failure is real.
    let (accepted, _) = inflated_chain(ChainChecks::off());
    assert_eq!(accepted, 0, "an inflated estimate should hold the chain");
    let (accepted, st) = inflated_chain(ChainChecks {
        every: 50,
        passes: 16,
        stuck: true,
        relocate: false,
        auto: None,
    });
    let first = &st.checks[0];
    assert_eq!(first.iteration, 50);
    assert!(first.stuck, "{first:?}");
    assert_eq!(first.accepted_since, 0);
    // The fresh estimate is one of the 16 at the chain's θ: within a few sd
    // of their mean, and 30 below the inflated one up to that spread.
    assert!((first.loglik_after - first.mean).abs() < 5.0 * first.sd + 1e-9);
    assert!(first.loglik_before - first.loglik_after > 20.0, "{first:?}");
    assert_eq!(st.stuck(), 1, "a chain at the posterior is stuck only once");
    // After the check it moves at an ordinary rate (lv11 at 100 particles
    // accepts 10–25 %; 100 iterations with none would be a failure).
    assert!(
        accepted >= 5,
        "{accepted} accepted after the fresh estimate"
    );
    assert_eq!(st.check_passes, 2 * 16);
}

#[test]
fn the_adapted_particle_count_gives_the_target_sd() {
    let target = 1.2;
    let checks = ChainChecks {
        every: 25,
        passes: 16,
        stuck: true,
        relocate: false,
        auto: Some(AutoParticles {
            min: 10,
            max: 3000,
            start: 10,
            target_sd: target,
        }),
    };
    let pmmh = sampler(10, 200, 1, checks);
    let mut exec = serial();
    let (mut st, _) = pmmh.init_chain(&mut exec, 0).unwrap();
    // Starts at 10 particles, where the sd is several times the target:
    // the start rounds raise N by at most 4× each.
    assert!(st.checks[0].sd > 3.0 * target, "{:?}", st.checks[0]);
    assert!(st.particles > 10);
    while st.iteration <= 200 {
        pmmh.step(&mut exec, &mut st).unwrap();
    }
    let kept = st.checks.last().unwrap();
    assert_eq!(kept.kind, CheckKind::Kept);
    assert_eq!(kept.particles, st.particles);
    // Measure the sd at the kept count with 200 passes of keys no run uses.
    let problem = lv11(st.particles as usize, 2018);
    let lls: Vec<f64> = (0..200)
        .map(|r| {
            let key = FilterKey {
                seed: 1234,
                chain: 9,
                iteration: r,
            };
            exec.log_likelihood(&problem, &st.theta, key)
                .unwrap()
                .loglik
        })
        .collect();
    let sd = Spread::of(&lls).sd;
    // The count comes from the mean of N·σ² over ≥ 4 checks of 16 passes
    // (relative sd of σ² about 0.18, so of σ about 0.09) and the measurement
    // from 200 passes (relative sd 0.05): 3 combined sd ≈ 0.31, widened for
    // σ² varying with θ along the chain.
    eprintln!("kept N {}, measured sd {sd:.3}", st.particles);
    assert!(
        (0.6 * target..=1.45 * target).contains(&sd),
        "sd {sd} at the kept {} particles, target {target}",
        st.particles
    );
}

fn check(iteration: u64, mean: f64, sd: f64) -> ParticleCheck {
    ParticleCheck {
        kind: CheckKind::BurnIn,
        iteration,
        particles: 100,
        passes: 16,
        mean,
        sd,
        collapsed: 0,
        log_prior: -10.0,
        next: 100,
        accepted_since: 3,
        stuck: false,
        loglik_before: mean,
        loglik_after: mean,
    }
}

#[test]
fn a_chain_far_below_the_best_is_moved_within_the_window_only() {
    let checks = ChainChecks {
        every: 50,
        passes: 16,
        stuck: true,
        relocate: true,
        auto: None,
    };
    let pmmh = sampler(50, 400, 3, checks);
    let mut exec = serial();
    let states: Vec<ChainState> = (0..3)
        .map(|c| {
            let (mut st, _) = pmmh.init_chain(&mut exec, c).unwrap();
            st.theta[0] *= 1.0 + c as f64;
            st
        })
        .collect();
    let at = |done: u64, levels: [f64; 3]| {
        let mut s = states.clone();
        for (st, l) in s.iter_mut().zip(levels) {
            st.iteration = done + 1;
            st.checks.push(check(done, l, 2.0));
        }
        let moved = pmmh.relocate(&mut s);
        (moved, s)
    };
    // d = 3: the gap allowed is χ²₃(1 − 10⁻⁴)/2 ≈ 10.9 (Wilson–Hilferty)
    // plus 3 standard errors of two 16-pass means of sd 2 (3·√(2·4/16) ≈ 2.1).
    let (moved, s) = at(200, [-100.0, -114.5, -105.0]);
    assert_eq!(moved.len(), 1, "{moved:?}");
    assert_eq!((moved[0].chain, moved[0].to), (1, 0));
    assert!((moved[0].gap - 14.5).abs() < 1e-12);
    assert!(
        (moved[0].allowed - 13.04).abs() < 0.05,
        "{}",
        moved[0].allowed
    );
    assert_eq!(s[1].theta, s[0].theta);
    assert_eq!(s[1].loglik, s[0].loglik);
    assert_eq!(s[1].chol, s[0].chol);
    assert_eq!(s[1].relocations.len(), 1);
    assert_eq!(s[2].theta, states[2].theta, "chain 2 is within the gap");
    // Outside the window (before half, after three quarters of burn-in) or
    // between checks nothing moves.
    for done in [50, 150, 350] {
        assert!(at(done, [-100.0, -200.0, -105.0]).0.is_empty(), "{done}");
    }
    let mut s = states.clone();
    for st in s.iter_mut() {
        st.iteration = 202;
        st.checks
            .push(check(200, -100.0 - 50.0 * st.chain as f64, 2.0));
    }
    assert!(pmmh.relocate(&mut s).is_empty());
}
