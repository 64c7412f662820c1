//! Resampling schemes: unbiased offspring counts, systematic within ±1 of N·w,
//! and independence from how the weight vector is split.
use pcmc_core::resample::{Resampling, offspring_all, offspring_before, offspring_slice, quantise};
use pcmc_core::rng::{Purpose, StreamKey};
use rand::{Rng, RngExt};

const ALL: [Resampling; 4] = [
    Resampling::Systematic,
    Resampling::Stratified,
    Resampling::Multinomial,
    Resampling::Residual,
];

fn weights(n: usize, seed: u64) -> Vec<u64> {
    let mut rng = StreamKey::new(seed, 0, 0, 0, 0, Purpose::Test).rng();
    (0..n)
        .map(|i| {
            if i % 5 == 2 {
                0
            } else {
                quantise(-3.0 * rng.random::<f64>(), 0.0)
            }
        })
        .collect()
}

fn key(r: u64) -> StreamKey {
    StreamKey::new(17, 0, r, 1, 0, Purpose::Resample)
}

#[test]
fn mean_offspring_is_n_times_weight() {
    let n = 37usize;
    let q = weights(n, 1);
    let total: u128 = q.iter().map(|x| u128::from(*x)).sum();
    let reps = 20_000u64;
    for scheme in ALL {
        let mut sum = vec![0u64; n];
        let mut out = vec![0u64; n];
        for r in 0..reps {
            offspring_all(scheme, &q, total, n as u64, key(r), &mut out);
            assert_eq!(out.iter().sum::<u64>(), n as u64);
            for (s, o) in sum.iter_mut().zip(&out) {
                *s += o;
            }
        }
        for i in 0..n {
            let expect = n as f64 * q[i] as f64 / total as f64;
            let mean = sum[i] as f64 / reps as f64;
            // Var(o_i) ≤ N w (1 − w) for every scheme here (multinomial is the largest).
            let w = q[i] as f64 / total as f64;
            let se = (n as f64 * w * (1.0 - w) / reps as f64).sqrt();
            assert!(
                (mean - expect).abs() <= 5.0 * se + 1e-12,
                "{scheme:?} particle {i}: mean {mean} vs {expect} (se {se})"
            );
        }
    }
}

#[test]
fn systematic_within_one_of_expectation() {
    for seed in 0..200 {
        let n = 1 + (seed as usize * 7) % 300;
        let q = weights(n, seed + 100);
        let total: u128 = q.iter().map(|x| u128::from(*x)).sum();
        if total == 0 {
            continue;
        }
        let mut out = vec![0u64; n];
        offspring_all(
            Resampling::Systematic,
            &q,
            total,
            n as u64,
            key(seed),
            &mut out,
        );
        for i in 0..n {
            let expect = n as f64 * q[i] as f64 / total as f64;
            assert!(
                (out[i] as f64) >= expect.floor() - 1e-9 && (out[i] as f64) <= expect.ceil() + 1e-9,
                "n={n} i={i}: {} vs {expect}",
                out[i]
            );
        }
    }
}

#[test]
fn split_independence() {
    for scheme in [Resampling::Systematic, Resampling::Stratified] {
        for seed in 0..50u64 {
            let n = 50 + seed as usize * 13;
            let q = weights(n, seed);
            let total: u128 = q.iter().map(|x| u128::from(*x)).sum();
            let mut whole = vec![0u64; n];
            offspring_all(scheme, &q, total, n as u64, key(seed), &mut whole);
            // Random contiguous split into up to 9 slices, including empty ones.
            let mut rng = StreamKey::new(seed, 1, 0, 0, 0, Purpose::Test).rng();
            let mut cuts: Vec<usize> = (0..8)
                .map(|_| (rng.next_u64() % (n as u64 + 1)) as usize)
                .collect();
            cuts.push(0);
            cuts.push(n);
            cuts.sort_unstable();
            let mut parts = vec![0u64; n];
            let mut before = 0u128;
            for w in cuts.windows(2) {
                let (a, b) = (w[0], w[1]);
                offspring_slice(
                    scheme,
                    &q[a..b],
                    before,
                    total,
                    n as u64,
                    key(seed),
                    &mut parts[a..b],
                );
                before += q[a..b].iter().map(|x| u128::from(*x)).sum::<u128>();
            }
            assert_eq!(parts, whole, "{scheme:?} seed {seed}");
        }
    }
}

/// `offspring_before` at every particle boundary is the running sum of the
/// counts: the global index of each particle's first offspring, which the
/// dataflow executor computes from the weight prefix alone. Includes
/// boundaries at zero weights, at the end (all N offspring), and particle
/// counts different from the number of offspring.
#[test]
fn offspring_before_is_the_prefix_of_counts() {
    for scheme in [Resampling::Systematic, Resampling::Stratified] {
        for seed in 0..60u64 {
            let n = 1 + seed as usize * 7;
            let q = weights(n, seed + 1000);
            let total: u128 = q.iter().map(|x| u128::from(*x)).sum();
            if total == 0 {
                continue;
            }
            let kids = [n as u64, (n as u64).div_ceil(3), 2 * n as u64 + 1][seed as usize % 3];
            let mut counts = vec![0u64; n];
            offspring_slice(scheme, &q, 0, total, kids, key(seed), &mut counts);
            assert_eq!(counts.iter().sum::<u64>(), kids);
            let (mut before, mut acc) = (0u128, 0u64);
            for i in 0..=n {
                assert_eq!(
                    offspring_before(scheme, before, total, kids, key(seed)),
                    acc,
                    "{scheme:?} seed {seed} boundary {i}"
                );
                if i < n {
                    before += u128::from(q[i]);
                    acc += counts[i];
                }
            }
        }
    }
}
