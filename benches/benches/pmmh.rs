//! One PMMH iteration (proposal, filter pass, accept/reject) of lv11 with
//! 1000 particles per executor: serial, rayon on 1 and 2 threads, and (with
//! `--features dataflow`) the dataflow executor with 1 and 2 partitions.
use criterion::{Criterion, criterion_group, criterion_main};
use pcmc_core::LikelihoodExecutor;
use pcmc_core::prelude::*;
use pcmc_core::serial;
use pcmc_core::workloads::{log_uniform_priors, lv11};
use pcmc_rayon::rayon_executor;
use std::hint::black_box;

fn sampler() -> Pmmh {
    let theta = [1.0, 0.005, 0.6];
    let priors = log_uniform_priors(&theta, 100.0);
    Pmmh::new(
        lv11(1000, 2018),
        priors,
        PmmhConfig {
            seed: 5,
            chains: 1,
            burn_in: 0,
            iterations: 1_000_000,
            thin: 1,
            init: theta.to_vec(),
            start: StartPoints::Fixed,
            proposal: ProposalCovariance::Diagonal(vec![0.02; 3]),
            early_rejection: true,
            checks: pcmc_core::tuning::ChainChecks::off(),
            adapt: None,
        },
    )
    .unwrap()
}

fn iterate(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    exec: &mut dyn LikelihoodExecutor,
) {
    let pmmh = sampler();
    let (mut st, _) = pmmh.init_chain(exec, 0).unwrap();
    g.bench_function(name, |b| {
        b.iter(|| black_box(pmmh.step(exec, &mut st).unwrap().loglik))
    });
}

fn pmmh(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("pmmh-iteration/lv11-1000");
    g.sample_size(10);
    iterate(&mut g, "serial", &mut serial());
    for threads in [1, 2] {
        iterate(
            &mut g,
            &format!("rayon-{threads}"),
            &mut rayon_executor(threads).unwrap(),
        );
    }
    #[cfg(feature = "dataflow")]
    for workers in [1, 2] {
        use pcmc_dataflow::{DataflowConfig, DataflowExecutor};
        iterate(
            &mut g,
            &format!("dataflow-{workers}"),
            &mut DataflowExecutor::new(DataflowConfig::new(workers, workers)).unwrap(),
        );
    }
    g.finish();
}

criterion_group!(benches, pmmh);
criterion_main!(benches);
