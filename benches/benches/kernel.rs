//! The exact SSA kernels (scalar, block, AVX2) on lv11 and lv12
//! trajectories; throughput in events. `simd` falls back to the block kernel
//! on CPUs without AVX2.
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pcmc_core::rng::{Purpose, StreamKey};
use pcmc_core::ssa::{BlockScratch, Outcome, Ssa};
use pcmc_core::workloads::{KernelCase, kernel_case};
use std::hint::black_box;

fn cases() -> Vec<KernelCase> {
    ["lv11", "lv12"]
        .iter()
        .filter_map(|n| kernel_case(n))
        .collect()
}

/// Events of `n` trajectories (keys 0..n) — fixed, so the throughput is exact.
fn count_events(ssa: &Ssa, c: &KernelCase, n: u64) -> u64 {
    let mut cum = vec![0.0; ssa.n_reactions()];
    (0..n)
        .map(|i| {
            let mut x = c.x0.clone();
            let mut rng = StreamKey::new(1, 0, 0, 0, i, Purpose::Test).rng();
            ssa.advance(&mut x, 0.0, c.span, &mut rng, &mut cum).1
        })
        .sum()
}

fn kernel(cr: &mut Criterion) {
    for c in cases() {
        let caps = vec![1_000_000; c.x0.len()];
        let ssa = Ssa::new(&c.network, &c.theta, &caps, u64::MAX);
        let n = if c.name == "lv11" { 64 } else { 4 };
        let events = count_events(&ssa, &c, n);
        let mut g = cr.benchmark_group(format!("ssa/{}", c.name));
        g.throughput(Throughput::Elements(events));
        g.sample_size(20);
        g.bench_function("scalar", |b| {
            let mut cum = vec![0.0; ssa.n_reactions()];
            b.iter(|| {
                let mut total = 0;
                for i in 0..n {
                    let mut x = c.x0.clone();
                    let mut rng = StreamKey::new(1, 0, 0, 0, i, Purpose::Test).rng();
                    total += ssa.advance(&mut x, 0.0, c.span, &mut rng, &mut cum).1;
                }
                black_box(total)
            })
        });
        g.bench_function("block", |b| {
            let s = c.x0.len();
            let lanes = n as usize;
            let mut scratch = BlockScratch::default();
            let mut outcomes = vec![Outcome::Reached; lanes];
            b.iter(|| {
                let mut block = vec![0u64; s * lanes];
                for j in 0..lanes {
                    for (sp, v) in c.x0.iter().enumerate() {
                        block[sp * lanes + j] = *v;
                    }
                }
                let mut rngs: Vec<_> = (0..n)
                    .map(|i| StreamKey::new(1, 0, 0, 0, i, Purpose::Test).rng())
                    .collect();
                black_box(ssa.advance_block(
                    &mut block,
                    lanes,
                    0.0,
                    c.span,
                    &mut rngs,
                    &mut outcomes,
                    &mut scratch,
                ))
            })
        });
        g.bench_function("simd", |b| {
            let s = c.x0.len();
            let lanes = n as usize;
            let mut scratch = BlockScratch::default();
            let mut outcomes = vec![Outcome::Reached; lanes];
            let states: Vec<_> = (0..n)
                .map(|i| StreamKey::new(1, 0, 0, 0, i, Purpose::Test).state())
                .collect();
            b.iter(|| {
                let mut block = vec![0u64; s * lanes];
                for j in 0..lanes {
                    for (sp, v) in c.x0.iter().enumerate() {
                        block[sp * lanes + j] = *v;
                    }
                }
                black_box(ssa.advance_block_simd(
                    &mut block,
                    lanes,
                    0.0,
                    c.span,
                    &states,
                    &mut outcomes,
                    &mut scratch,
                ))
            })
        });
        g.finish();
    }
}

criterion_group!(benches, kernel);
criterion_main!(benches);
