//! The exact SSA kernels (scalar, block, AVX2) on lv11, lv12 and hare–lynx
//! trajectories, side by side with two peers measured in the same run: the
//! `rebop` crate's `define_system!` model of the same network (a fast
//! Gillespie simulator for Rust and Python) and a tight C-like loop written
//! for this model ([`reference_lv_loop`]). Same parameters, start state,
//! horizon and population cap (rebop has no cap; at these parameters no
//! trajectory comes near it). Throughput in events, counted for every
//! implementation (rebop's models carry an extra species `ev` that every
//! reaction increments: one integer add per event). `simd` falls back to
//! the block kernel on CPUs without AVX2. The hare–lynx case (the job's
//! four-reaction network near its posterior mean, from the 1900 counts over
//! the 20 observed years) has no C-like loop: that loop is written for
//! Lotka–Volterra only.
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use pcmc_core::model::Network;
use pcmc_core::rng::{Purpose, StreamKey};
use pcmc_core::ssa::{BlockScratch, Outcome, Ssa};
use pcmc_core::workloads::{KernelCase, kernel_case, reference_lv_loop};
use std::hint::black_box;

rebop::define_system! {
    birth predation1 death1;
    RebopLv11 { prey, pred1, ev }
    r_birth: prey => prey + prey + ev @ birth
    r_predation1: prey + pred1 => pred1 + pred1 + ev @ predation1
    r_death1: pred1 => ev @ death1
}

rebop::define_system! {
    birth predation1 predation2 death1 death2;
    RebopLv12 { prey, pred1, pred2, ev }
    r_birth: prey => prey + prey + ev @ birth
    r_predation1: prey + pred1 => pred1 + pred1 + ev @ predation1
    r_predation2: prey + pred2 => pred2 + pred2 + ev @ predation2
    r_death1: pred1 => ev @ death1
    r_death2: pred2 => ev @ death2
}

rebop::define_system! {
    a b c d;
    RebopHareLynx { hare, lynx, ev }
    r_birth: hare => hare + hare + ev @ a
    r_predation: hare + lynx => lynx + ev @ b
    r_predator_birth: hare + lynx => hare + lynx + lynx + ev @ c
    r_death: lynx => ev @ d
}

/// The hare–lynx job's network near its posterior mean, from the 1900
/// counts over the 20 observed years.
fn hare_lynx_case() -> KernelCase {
    KernelCase {
        name: "hare-lynx",
        network: Network::predation_birth(),
        theta: vec![0.54, 0.0027, 0.0026, 0.87],
        x0: vec![300, 40],
        span: 20.0,
    }
}

/// Events of `n` rebop trajectories of `c` (seeds 0..n).
fn rebop_events(c: &KernelCase, n: u64) -> u64 {
    let t = &c.theta;
    (0..n)
        .map(|i| match c.name {
            "lv11" => {
                let mut m = RebopLv11::with_parameters(t[0], t[1], t[2]);
                m.seed(i);
                (m.prey, m.pred1) = (c.x0[0] as isize, c.x0[1] as isize);
                m.advance_until(c.span);
                m.ev as u64
            }
            "hare-lynx" => {
                let mut m = RebopHareLynx::with_parameters(t[0], t[1], t[2], t[3]);
                m.seed(i);
                (m.hare, m.lynx) = (c.x0[0] as isize, c.x0[1] as isize);
                m.advance_until(c.span);
                m.ev as u64
            }
            _ => {
                let mut m = RebopLv12::with_parameters(t[0], t[1], t[2], t[3], t[4]);
                m.seed(i);
                (m.prey, m.pred1, m.pred2) = (c.x0[0] as isize, c.x0[1] as isize, c.x0[2] as isize);
                m.advance_until(c.span);
                m.ev as u64
            }
        })
        .sum()
}

fn cases() -> Vec<KernelCase> {
    let mut cases: Vec<_> = ["lv11", "lv12"]
        .iter()
        .filter_map(|n| kernel_case(n))
        .collect();
    cases.push(hare_lynx_case());
    cases
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
        let n = if c.name == "lv12" { 4 } else { 64 };
        let events = count_events(&ssa, &c, n);
        let mut g = cr.benchmark_group(format!("ssa/{}", c.name));
        g.sample_size(20);
        g.throughput(Throughput::Elements(rebop_events(&c, n)));
        g.bench_function("rebop", |b| b.iter(|| black_box(rebop_events(&c, n))));
        if c.name.starts_with("lv") {
            let reference: u64 = (0..n).map(|i| reference_lv_loop(&c, i, 1_000_000)).sum();
            g.throughput(Throughput::Elements(reference));
            g.bench_function("reference-loop", |b| {
                b.iter(|| {
                    black_box(
                        (0..n)
                            .map(|i| reference_lv_loop(&c, i, 1_000_000))
                            .sum::<u64>(),
                    )
                })
            });
        }
        g.throughput(Throughput::Elements(events));
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
