//! The dataflow executor: bit identity with the serial executor at many
//! partition and thread counts (particle counts the partition count does not
//! divide, more partitions than particles, every resampling scheme it
//! supports, both kernels, collapse), task retries that leave results
//! unchanged, a clear error beyond the retry bound, and the shape of its
//! plans.
use pcmc_core::prelude::*;
use pcmc_core::workloads::{lv11, lv12_small};
use pcmc_core::{LikelihoodExecutor, serial};
use pcmc_dataflow::{DataflowConfig, DataflowExecutor};

fn key(iteration: u64) -> FilterKey {
    FilterKey {
        seed: 21,
        chain: 1,
        iteration,
    }
}

fn exec(partitions: usize, threads: usize) -> DataflowExecutor {
    DataflowExecutor::new(DataflowConfig::new(partitions, threads)).unwrap()
}

fn same(a: &FilterOutput, b: &FilterOutput, what: &str) {
    assert_eq!(a.loglik.to_bits(), b.loglik.to_bits(), "{what}: loglik");
    assert_eq!(a.ess, b.ess, "{what}: ess");
    assert_eq!(a.counters, b.counters, "{what}: counters");
    assert_eq!(a.collapsed_at, b.collapsed_at, "{what}: collapse");
}

#[test]
fn filter_equals_serial_at_any_partition_count() {
    let theta11 = [1.0, 0.005, 0.6];
    let theta12 = [10.0, 0.005, 0.0025, 6.0, 3.0];
    let cases = [
        (lv11(101, 1), &theta11[..]),
        (lv12_small(37, 2), &theta12[..]),
    ];
    for (problem, theta) in &cases {
        let reference = serial().log_likelihood(problem, theta, key(3)).unwrap();
        assert!(reference.loglik.is_finite());
        for (parts, threads) in [(1, 1), (2, 2), (3, 2), (8, 2), (64, 2), (5, 1)] {
            let mut e = exec(parts, threads);
            // Twice: plans are reused across passes.
            for it in [3, 3] {
                let got = e.log_likelihood(problem, theta, key(it)).unwrap();
                same(&got, &reference, &format!("P={parts} T={threads}"));
                assert_eq!(got.task_retries, 0);
            }
            // Another θ and key with the same plans.
            let theta2: Vec<f64> = theta.iter().map(|t| t * 1.1).collect();
            let r2 = serial().log_likelihood(problem, &theta2, key(4)).unwrap();
            let g2 = e.log_likelihood(problem, &theta2, key(4)).unwrap();
            same(&g2, &r2, &format!("P={parts} second θ"));
        }
    }
}

#[test]
fn schemes_kernels_and_particle_counts() {
    let theta = [1.0, 0.005, 0.6];
    for n in [1usize, 2, 17, 64] {
        for scheme in [Resampling::Systematic, Resampling::Stratified] {
            for kernel in [
                KernelChoice::Scalar,
                KernelChoice::Batch,
                KernelChoice::Simd,
            ] {
                let base = lv11(n, 5);
                let mut cfg = base.config().clone();
                cfg.resampling = scheme;
                cfg.kernel = kernel;
                let problem = base.with_config(cfg).unwrap();
                let reference = serial().log_likelihood(&problem, &theta, key(7)).unwrap();
                for parts in [1, 3, 7] {
                    let got = exec(parts, 2)
                        .log_likelihood(&problem, &theta, key(7))
                        .unwrap();
                    same(
                        &got,
                        &reference,
                        &format!("N={n} {scheme:?} {kernel:?} P={parts}"),
                    );
                }
            }
        }
    }
}

#[test]
fn one_partition_supports_every_scheme_and_more_refuse_the_global_ones() {
    let theta = [1.0, 0.005, 0.6];
    for scheme in [Resampling::Multinomial, Resampling::Residual] {
        let base = lv11(50, 6);
        let mut cfg = base.config().clone();
        cfg.resampling = scheme;
        let problem = base.with_config(cfg).unwrap();
        let reference = serial().log_likelihood(&problem, &theta, key(1)).unwrap();
        let got = exec(1, 2).log_likelihood(&problem, &theta, key(1)).unwrap();
        same(&got, &reference, &format!("{scheme:?} P=1"));
        let err = exec(2, 2)
            .log_likelihood(&problem, &theta, key(1))
            .unwrap_err();
        assert!(
            err.to_string().contains("systematic or stratified"),
            "{err}"
        );
    }
}

#[test]
fn collapse_gives_minus_infinity_as_serial() {
    // A population cap below the data: every particle is capped at the first
    // observation.
    let base = lv11(40, 8);
    let mut cfg = base.config().clone();
    cfg.caps = vec![5, 5];
    let problem = base.with_config(cfg).unwrap();
    let theta = [1.0, 0.005, 0.6];
    let reference = serial().log_likelihood(&problem, &theta, key(2)).unwrap();
    assert_eq!(reference.loglik, f64::NEG_INFINITY);
    assert!(reference.collapsed_at.is_some());
    let got = exec(3, 2).log_likelihood(&problem, &theta, key(2)).unwrap();
    same(&got, &reference, "collapse");
    // A θ outside the support is −∞ without running anything.
    let got = exec(3, 2)
        .log_likelihood(&problem, &[1.0, -0.005, 0.6], key(2))
        .unwrap();
    assert_eq!(got.loglik, f64::NEG_INFINITY);
}

#[test]
fn failed_tasks_are_retried_and_change_nothing() {
    let problem = lv11(60, 9);
    let theta = [1.0, 0.005, 0.6];
    let reference = serial().log_likelihood(&problem, &theta, key(5)).unwrap();
    let mut cfg = DataflowConfig::new(4, 2);
    cfg.fail_rate = 0.3;
    cfg.max_attempts = 30;
    let mut e = DataflowExecutor::new(cfg).unwrap();
    let got = e.log_likelihood(&problem, &theta, key(5)).unwrap();
    same(&got, &reference, "with injected failures");
    // 16 steps × 4 partitions at a 30% failure rate: retries are certain
    // in practice (P(no retry) = 0.7^64 ≈ 10^-10).
    assert!(got.task_retries > 0);
}

#[test]
fn failures_beyond_the_retry_bound_end_with_a_clear_error() {
    let problem = lv11(30, 9);
    let mut cfg = DataflowConfig::new(3, 2);
    cfg.fail_rate = 1.0;
    cfg.max_attempts = 3;
    let err = DataflowExecutor::new(cfg)
        .unwrap()
        .log_likelihood(&problem, &[1.0, 0.005, 0.6], key(5))
        .unwrap_err()
        .to_string();
    assert!(err.contains("failed 3 time(s)"), "{err}");
    assert!(err.contains("injected failure"), "{err}");
}

#[test]
fn plans_shuffle_by_range_and_never_gather_particles() {
    let problem = lv12_small(50, 2);
    let mut e = exec(4, 2);
    let plans = e.explain(&problem).unwrap();
    if std::env::var_os("PCMC_SHOW_PLANS").is_some() {
        for (name, p) in &plans {
            eprintln!("== {name}\n{p}");
        }
    }
    let get = |name: &str| {
        plans
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, p)| p.clone())
            .unwrap()
    };
    let gathers = ["CoalescePartitionsExec", "SortPreservingMergeExec"];
    // Propagation: partition-local, the volatile UDF evaluated once per row.
    let prop = get("propagate");
    for g in gathers.iter().chain(&["RepartitionExec"]) {
        assert!(!prop.contains(g), "propagate plan has {g}:\n{prop}");
    }
    assert_eq!(
        prop.matches("pcmc_propagate(").count(),
        1,
        "propagation must run once per row:\n{prop}"
    );
    assert!(prop.contains("pcmc_log_weight("), "{prop}");
    // Resampling: sort within partitions, offspring, then a range shuffle.
    let res = get("resample");
    for g in gathers {
        assert!(!res.contains(g), "resample plan has {g}:\n{res}");
    }
    assert!(res.contains("RepartitionExec"), "{res}");
    assert!(res.contains("Range("), "{res}");
    assert!(res.contains("OffspringExec"), "{res}");
    assert!(res.contains("preserve_partitioning=[true]"), "{res}");
    // Reductions gather only partial aggregates (one row per partition).
    for name in ["reduce", "sums"] {
        let p = get(name);
        let lines: Vec<&str> = p.lines().collect();
        for (i, l) in lines.iter().enumerate() {
            if gathers.iter().any(|g| l.contains(g)) || l.contains("RepartitionExec") {
                assert!(
                    lines[i + 1..].iter().any(|x| x.contains("mode=Partial")),
                    "{name}: a gather or shuffle below the partial aggregate:\n{p}"
                );
            }
        }
    }
    assert!(get("sums").contains("pcmc_weight_sum("));
}

/// SMC² with its θ-particles in 1, 3 and 8 partitions (and with injected
/// task failures, retried) gives the serial run's output bit for bit: every
/// θ-particle, weight, key history and step record, and the evidence.
#[test]
fn smc2_on_dataflow_equals_serial_at_any_partition_count() {
    use pcmc_core::smc2::SerialPasses;
    let smc2 = pcmc_core::workloads::smc2_lv11_small();
    let reference = smc2.run(&mut SerialPasses::default()).unwrap();
    assert!(reference.steps.iter().filter(|s| s.resampled).count() >= 2);
    assert!(
        reference
            .steps
            .iter()
            .any(|s| s.exchange_log_increment.is_some())
    );
    for (parts, threads) in [(1, 1), (3, 2), (8, 2), (64, 3)] {
        let mut e = exec(parts, threads);
        let out = smc2.run(&mut e).unwrap();
        assert_eq!(out, reference, "{parts} partitions on {threads} threads");
        assert_eq!(out.log_evidence.to_bits(), reference.log_evidence.to_bits());
        assert_eq!(e.pass_task_retries(), 0);
    }
    let mut cfg = DataflowConfig::new(4, 2);
    cfg.fail_rate = 0.3;
    cfg.max_attempts = 30;
    let mut e = DataflowExecutor::new(cfg).unwrap();
    let out = smc2.run(&mut e).unwrap();
    assert_eq!(out, reference, "with injected failures");
    // Dozens of batches × 4 tasks at a 30 % failure rate: retries are
    // certain in practice.
    assert!(e.pass_task_retries() > 0);
}
