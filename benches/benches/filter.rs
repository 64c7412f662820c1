//! One bootstrap filter pass of lv11 with 1000 particles per executor:
//! serial, rayon on 1 and 2 threads, and (with `--features dataflow`) the
//! dataflow executor with 1 and 2 partitions on as many threads.
use criterion::{Criterion, criterion_group, criterion_main};
use pcmc_core::LikelihoodExecutor;
use pcmc_core::prelude::*;
use pcmc_core::serial;
use pcmc_core::workloads::lv11;
use pcmc_rayon::rayon_executor;
use std::hint::black_box;

fn pass(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    problem: &FilterProblem,
    exec: &mut dyn LikelihoodExecutor,
) {
    let theta = [1.0, 0.005, 0.6];
    let mut it = 0u64;
    g.bench_function(name, |b| {
        b.iter(|| {
            it += 1;
            let key = FilterKey {
                seed: 1,
                chain: 0,
                iteration: it % 8,
            };
            black_box(exec.log_likelihood(problem, &theta, key).unwrap().loglik)
        })
    });
}

fn filter(cr: &mut Criterion) {
    let problem = lv11(1000, 2018);
    let mut g = cr.benchmark_group("filter/lv11-1000");
    g.sample_size(10);
    pass(&mut g, "serial", &problem, &mut serial());
    for threads in [1, 2] {
        let mut exec = rayon_executor(threads).unwrap();
        pass(&mut g, &format!("rayon-{threads}"), &problem, &mut exec);
    }
    #[cfg(feature = "dataflow")]
    for workers in [1, 2] {
        use pcmc_dataflow::{DataflowConfig, DataflowExecutor};
        let mut exec = DataflowExecutor::new(DataflowConfig::new(workers, workers)).unwrap();
        pass(&mut g, &format!("dataflow-{workers}"), &problem, &mut exec);
    }
    g.finish();
}

criterion_group!(benches, filter);
criterion_main!(benches);
