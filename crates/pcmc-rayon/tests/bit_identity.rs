//! Determinism contract: the rayon executor gives chains identical bit for bit
//! to the serial executor at any thread count, for particle counts that the
//! block size does not divide, with every resampling scheme and both kernels.
use pcmc_core::prelude::*;
use pcmc_core::workloads::{log_uniform_priors, lv11, lv12_small};
use pcmc_core::{LikelihoodExecutor, serial};
use pcmc_rayon::rayon_executor;

/// (θ bits, log-likelihood bits, accepted) per record.
type Trace = Vec<(Vec<u64>, u64, bool, Option<Vec<u64>>)>;

fn chain<E: LikelihoodExecutor>(pmmh: &Pmmh, exec: &mut E) -> Trace {
    let mut t = Vec::new();
    pmmh.run(exec, |rec, _| {
        t.push((
            rec.theta.iter().map(|x| x.to_bits()).collect(),
            rec.loglik.to_bits(),
            rec.accepted,
            rec.filter
                .as_ref()
                .map(|f| f.ess.iter().map(|e| e.to_bits()).collect()),
        ));
        Ok(())
    })
    .unwrap();
    t
}

fn sampler(problem: FilterProblem, theta: &[f64], chains: usize) -> Pmmh {
    sampler_with(
        problem,
        theta,
        chains,
        pcmc_core::tuning::ChainChecks::off(),
        6,
    )
}

fn sampler_with(
    problem: FilterProblem,
    theta: &[f64],
    chains: usize,
    checks: pcmc_core::tuning::ChainChecks,
    burn_in: u64,
) -> Pmmh {
    let priors = log_uniform_priors(theta, 100.0);
    let init: Vec<f64> = theta.iter().map(|t| t * 1.2).collect();
    let d = theta.len();
    Pmmh::new(
        problem,
        priors,
        PmmhConfig {
            seed: 99,
            chains,
            burn_in,
            iterations: 6,
            thin: 1,
            init,
            start: StartPoints::Dispersed { sd: 0.1 },
            proposal: ProposalCovariance::Diagonal(vec![0.05; d]),
            early_rejection: true,
            checks,
            adapt: Some(AdaptConfig { start: 3, every: 2 }),
        },
    )
    .unwrap()
}

fn check(problem: FilterProblem, theta: &[f64], chains: usize) {
    let reference = chain(&sampler(problem.clone(), theta, chains), &mut serial());
    assert!(
        reference.iter().any(|r| r.2),
        "no proposal accepted: weak test"
    );
    for threads in [1, 2, 3, 7] {
        let got = chain(
            &sampler(problem.clone(), theta, chains),
            &mut rayon_executor(threads).unwrap(),
        );
        assert_eq!(got, reference, "rayon with {threads} threads differs");
    }
}

/// The chain and every chain's particle counts and checks, with the
/// particle count adapted and the stuck and relocation checks on.
#[test]
fn burn_in_checks_and_adapted_particle_counts_are_executor_independent() {
    use pcmc_core::tuning::{AutoParticles, ChainChecks};
    let checks = ChainChecks {
        every: 3,
        passes: 3,
        stuck: true,
        relocate: true,
        auto: Some(AutoParticles {
            min: 7,
            max: 301,
            start: 13,
            target_sd: 1.2,
        }),
    };
    let run = |exec: &mut dyn LikelihoodExecutor| {
        let pmmh = sampler_with(lv11(100, 1), &[1.0, 0.005, 0.6], 3, checks, 12);
        let mut t = Vec::new();
        let states = pmmh
            .run(exec, |rec, st| {
                t.push((
                    rec.theta.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                    rec.loglik.to_bits(),
                    st.particles,
                ));
                Ok(())
            })
            .unwrap();
        let checks: Vec<_> = states
            .iter()
            .map(|s| (s.checks.clone(), s.check_passes, s.counters))
            .collect();
        (t, checks)
    };
    let reference = run(&mut serial());
    let counts: std::collections::BTreeSet<u64> = reference.0.iter().map(|r| r.2).collect();
    assert!(
        counts.len() > 1,
        "the particle count never changed: {counts:?}"
    );
    assert!(reference.1.iter().all(|c| c.0.len() >= 4 && c.1 > 0));
    for threads in [1, 2, 3, 7] {
        let got = run(&mut rayon_executor(threads).unwrap());
        assert_eq!(got.0, reference.0, "chain with {threads} threads");
        assert_eq!(got.1, reference.1, "checks with {threads} threads");
    }
}

#[test]
fn lv11_serial_equals_rayon() {
    check(lv11(333, 1), &[1.0, 0.005, 0.6], 2);
}

#[test]
fn two_predators_serial_equals_rayon() {
    check(lv12_small(130, 2), &[10.0, 0.005, 0.0025, 6.0, 3.0], 1);
}

#[test]
fn every_scheme_and_kernel_is_executor_independent() {
    let base = lv11(201, 3);
    let theta = [1.0, 0.005, 0.6];
    for scheme in [
        Resampling::Systematic,
        Resampling::Stratified,
        Resampling::Multinomial,
        Resampling::Residual,
    ] {
        let mut cfg = base.config().clone();
        cfg.resampling = scheme;
        let scalar = base.with_config(cfg.clone()).unwrap();
        cfg.kernel = KernelChoice::Batch;
        let batch = base.with_config(cfg.clone()).unwrap();
        cfg.kernel = KernelChoice::Simd;
        let simd = base.with_config(cfg).unwrap();
        let key = FilterKey {
            seed: 4,
            chain: 1,
            iteration: 2,
        };
        let reference = serial().log_likelihood(&scalar, &theta, key).unwrap();
        assert!(reference.loglik.is_finite());
        for threads in [1, 2, 3, 7] {
            let mut exec = rayon_executor(threads).unwrap();
            for p in [&scalar, &batch, &simd] {
                let got = exec.log_likelihood(p, &theta, key).unwrap();
                assert_eq!(
                    got.loglik.to_bits(),
                    reference.loglik.to_bits(),
                    "{scheme:?} {threads}"
                );
                assert_eq!(got.counters, reference.counters);
                assert_eq!(got.ess, reference.ess);
            }
        }
    }
}

/// SMC² with θ-particles across 1, 2, 3 and 7 threads gives the serial run's
/// output bit for bit: every θ-particle, weight, estimate, key history and
/// step record, and the evidence.
#[test]
fn smc2_on_rayon_equals_serial_at_any_thread_count() {
    use pcmc_core::smc2::{SerialPasses, Smc2, Smc2Config};
    use pcmc_rayon::RayonRunner;
    let smc2 = pcmc_core::workloads::smc2_lv11_small();
    let reference = smc2.run(&mut SerialPasses::default()).unwrap();
    let moved = reference.steps.iter().filter(|s| s.resampled).count();
    assert!(
        moved >= 2,
        "only {moved} resample-move steps: the test would not cover them"
    );
    let exchanged = reference
        .steps
        .iter()
        .filter(|s| s.exchange_log_increment.is_some())
        .count();
    assert!(
        exchanged >= 1 && reference.nx > 20,
        "no exchange step: the test would not cover it"
    );
    for threads in [1, 2, 3, 7] {
        let out = smc2.run(&mut RayonRunner::new(threads).unwrap()).unwrap();
        assert_eq!(out, reference, "{threads} threads");
        assert_eq!(out.log_evidence.to_bits(), reference.log_evidence.to_bits());
    }
    // Every move's pass run to the end: the same run (early rejection only
    // skips work whose outcome is already decided).
    let full = Smc2::new(
        smc2.problem().clone(),
        smc2.priors().to_vec(),
        Smc2Config {
            early_rejection: false,
            ..smc2.config().clone()
        },
    )
    .unwrap()
    .run(&mut SerialPasses::default())
    .unwrap();
    assert_eq!(full, reference, "without early rejection");
}
