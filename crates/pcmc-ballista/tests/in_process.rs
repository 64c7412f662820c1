//! The Ballista executor's plans, operators and driver without a cluster:
//! every job's physical plan goes through pcmc's codec both ways (as it
//! does to the scheduler and the executors) and runs in this process. The
//! results are the serial executor's bit for bit at any partition count,
//! particle count and distributable resampling scheme, early rejection stops
//! at the same step, and the step values survive the codec exactly. The
//! multi-process cluster is tested in `pcmc-cli/tests/ballista.rs`.
use pcmc_ballista::{BallistaExecutor, ClusterConfig};
use pcmc_core::accept::AcceptTest;
use pcmc_core::prelude::*;
use pcmc_core::workloads::{lv11, lv12_small};
use pcmc_core::{LikelihoodExecutor, serial};
use pcmc_dataflow::params::StepWire;

fn key(iteration: u64) -> FilterKey {
    FilterKey {
        seed: 33,
        chain: 2,
        iteration,
    }
}

fn exec(parts: usize, dir: &std::path::Path) -> BallistaExecutor {
    BallistaExecutor::in_process(ClusterConfig::new("unused:1", parts, dir.to_path_buf())).unwrap()
}

fn same(a: &FilterOutput, b: &FilterOutput, what: &str) {
    assert_eq!(a.loglik.to_bits(), b.loglik.to_bits(), "{what}: loglik");
    assert_eq!(a.ess, b.ess, "{what}: ess");
    assert_eq!(a.counters, b.counters, "{what}: counters");
    assert_eq!(a.collapsed_at, b.collapsed_at, "{what}: collapse");
    assert_eq!(a.stopped_after, b.stopped_after, "{what}: stop");
}

/// Files left in the work directory (the run's own directory excluded).
fn leftovers(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|run| std::fs::read_dir(run.unwrap().path()).unwrap().count())
        .sum()
}

#[test]
fn filter_equals_serial_at_any_partition_count() {
    let theta11 = [1.0, 0.005, 0.6];
    let theta12 = [10.0, 0.005, 0.0025, 6.0, 3.0];
    for (problem, theta) in [
        (lv11(101, 1), &theta11[..]),
        (lv12_small(37, 2), &theta12[..]),
    ] {
        let reference = serial().log_likelihood(&problem, theta, key(3)).unwrap();
        assert!(reference.loglik.is_finite());
        for parts in [1, 2, 3, 8, 64] {
            let tmp = tempfile::tempdir().unwrap();
            let mut e = exec(parts, tmp.path());
            // Twice, and at another θ: passes reuse nothing but the driver.
            for it in [3, 3] {
                let got = e.log_likelihood(&problem, theta, key(it)).unwrap();
                same(&got, &reference, &format!("P={parts}"));
                assert_eq!(got.jobs, 2 * problem.data().len() as u64);
                assert_eq!((got.task_retries, got.jobs_resubmitted), (0, 0));
                assert_eq!(got.rows_moved == 0, parts == 1, "P={parts}");
                assert_eq!(leftovers(tmp.path()), 0, "P={parts}: files left");
            }
            let theta2: Vec<f64> = theta.iter().map(|t| t * 1.1).collect();
            let r2 = serial().log_likelihood(&problem, &theta2, key(4)).unwrap();
            let g2 = e.log_likelihood(&problem, &theta2, key(4)).unwrap();
            same(&g2, &r2, &format!("P={parts} second θ"));
        }
    }
}

#[test]
fn schemes_kernels_and_particle_counts() {
    let theta = [1.0, 0.005, 0.6];
    let tmp = tempfile::tempdir().unwrap();
    for n in [1usize, 2, 17] {
        for scheme in [
            Resampling::Systematic,
            Resampling::Stratified,
            Resampling::Multinomial,
            Resampling::Residual,
        ] {
            let base = lv11(n, 5);
            let mut cfg = base.config().clone();
            cfg.resampling = scheme;
            cfg.kernel = KernelChoice::Scalar;
            let problem = base.with_config(cfg).unwrap();
            let reference = serial().log_likelihood(&problem, &theta, key(7)).unwrap();
            let parts: &[usize] = if scheme.is_distributable() {
                &[1, 3, 7]
            } else {
                &[1]
            };
            for &p in parts {
                let got = exec(p, tmp.path())
                    .log_likelihood(&problem, &theta, key(7))
                    .unwrap();
                same(&got, &reference, &format!("N={n} {scheme:?} P={p}"));
            }
            if !scheme.is_distributable() && n > 1 {
                let err = exec(3, tmp.path())
                    .log_likelihood(&problem, &theta, key(7))
                    .unwrap_err()
                    .to_string();
                assert!(err.contains("filter.resampling"), "{err}");
            }
        }
    }
}

#[test]
fn early_rejection_stops_at_the_serial_executors_step() {
    let problem = lv11(64, 9);
    let tmp = tempfile::tempdir().unwrap();
    let mut e = exec(3, tmp.path());
    let mut stopped = 0;
    for (i, theta) in [[1.0, 0.005, 0.6], [1.3, 0.004, 0.9], [0.5, 0.01, 0.3]]
        .iter()
        .enumerate()
    {
        let full = serial()
            .log_likelihood(&problem, theta, key(i as u64))
            .unwrap();
        for log_u in [full.loglik - 1e-9, full.loglik + 5.0, full.loglik + 500.0] {
            let test = AcceptTest {
                log_u,
                current_loglik: 0.0,
                log_prior: 0.0,
                current_log_prior: 0.0,
                log_jacobian: 0.0,
            };
            let reference = serial()
                .filter(&problem, theta, key(i as u64), Some(&test))
                .unwrap();
            let got = e
                .filter(&problem, theta, key(i as u64), Some(&test))
                .unwrap();
            same(&got, &reference, &format!("θ {i}, log u {log_u}"));
            stopped += usize::from(got.stopped_after.is_some());
        }
    }
    assert!(stopped >= 3, "only {stopped} passes stopped early");
}

#[test]
fn step_values_cross_the_wire_exactly() {
    let problem = lv12_small(5, 3);
    let wire = StepWire {
        problem: problem.clone(),
        theta: vec![f64::MIN_POSITIVE, 5e-324, 0.1 + 0.2, 1e300, 0.0],
        key: key(u64::MAX),
        step: 4,
        t0: 1.0 / 3.0,
        t1: std::f64::consts::PI,
        initial: false,
        max: -745.133_219_101_941_2,
        before: vec![0, 1, u128::MAX / 3],
        total: u128::MAX,
    };
    let text = serde_json::to_string(&wire).unwrap();
    let back: StepWire = serde_json::from_str(&text).unwrap();
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&back.theta), bits(&wire.theta));
    assert_eq!(
        (back.t0.to_bits(), back.t1.to_bits(), back.max.to_bits()),
        (wire.t0.to_bits(), wire.t1.to_bits(), wire.max.to_bits())
    );
    assert_eq!((back.before, back.total), (wire.before, wire.total));
    assert_eq!(
        (back.key, back.step, back.initial),
        (wire.key, wire.step, wire.initial)
    );
    // The problem is the same: same data, same bounds, same filter results.
    let theta = [10.0, 0.005, 0.0025, 6.0, 3.0];
    let a = serial().log_likelihood(&problem, &theta, key(1)).unwrap();
    let b = serial()
        .log_likelihood(&back.problem, &theta, key(1))
        .unwrap();
    same(&a, &b, "deserialised problem");
}

/// SMC² with each batch of passes as a job through the codec: the serial
/// run's output bit for bit at 1, 3 and 8 partitions, and nothing left in
/// the work directory.
#[test]
fn smc2_equals_serial_at_any_partition_count() {
    use pcmc_core::smc2::SerialPasses;
    let smc2 = pcmc_core::workloads::smc2_lv11_small();
    let reference = smc2.run(&mut SerialPasses::default()).unwrap();
    for parts in [1, 3, 8] {
        let tmp = tempfile::tempdir().unwrap();
        let out = smc2.run(&mut exec(parts, tmp.path())).unwrap();
        assert_eq!(out, reference, "P={parts}");
        assert_eq!(leftovers(tmp.path()), 0, "P={parts}: files left");
    }
}
