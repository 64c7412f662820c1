//! The ziggurat exponential ([`pcmc_core::ssa::exp::exp1`]) draws from the
//! unit exponential law: χ² over equiprobable bins (which also cover the
//! layer boundaries, where a wrong table would show), the tail beyond the
//! base strip (its probability e^{−r} and its memoryless shape), and the
//! first two moments. Fixed seeds, α = 0.001.

use pcmc_core::rng::{Purpose, StreamKey};
use pcmc_core::ssa::exp::exp1;
use statrs::distribution::{ChiSquared, ContinuousCDF, Exp};

const N: usize = 2_000_000;
const R: f64 = 7.697_117_470_131_05;

fn draws(seed: u64) -> Vec<f64> {
    let mut rng = StreamKey::new(seed, 0, 0, 0, 0, Purpose::Test).rng();
    (0..N).map(|_| exp1(&mut rng)).collect()
}

#[test]
fn equiprobable_bins() {
    let x = draws(1);
    let bins = 1000;
    let mut count = vec![0u64; bins];
    for v in &x {
        assert!(*v > 0.0 && v.is_finite());
        // F(x) = 1 − e^{−x} is uniform under the law.
        let b = ((1.0 - (-v).exp()) * bins as f64) as usize;
        count[b.min(bins - 1)] += 1;
    }
    let e = N as f64 / bins as f64;
    let chi2: f64 = count.iter().map(|c| (*c as f64 - e).powi(2) / e).sum();
    let crit = ChiSquared::new((bins - 1) as f64)
        .unwrap()
        .inverse_cdf(0.999);
    assert!(
        chi2 < crit,
        "χ² = {chi2} on {} df (critical {crit})",
        bins - 1
    );
}

#[test]
fn fine_bins_around_the_layers() {
    // 4000 equal-width bins on [0, 8): each layer boundary of the ziggurat
    // falls inside some bin, and a misplaced layer shifts mass between
    // neighbours. Bins with fewer than 5 expected draws are pooled.
    let x = draws(2);
    let width = 8.0 / 4000.0;
    let mut count = vec![0u64; 4001];
    for v in &x {
        count[((v / width) as usize).min(4000)] += 1;
    }
    let law = Exp::new(1.0).unwrap();
    let (mut chi2, mut df) = (0.0, 0usize);
    let (mut obs, mut exp) = (0.0, 0.0);
    for (b, c) in count.iter().enumerate() {
        let p = if b == 4000 {
            law.sf(8.0)
        } else {
            law.cdf((b + 1) as f64 * width) - law.cdf(b as f64 * width)
        };
        obs += *c as f64;
        exp += p * N as f64;
        if exp >= 5.0 {
            chi2 += (obs - exp).powi(2) / exp;
            df += 1;
            (obs, exp) = (0.0, 0.0);
        }
    }
    chi2 += if exp > 0.0 {
        (obs - exp).powi(2) / exp
    } else {
        0.0
    };
    let crit = ChiSquared::new(df as f64).unwrap().inverse_cdf(0.999);
    assert!(chi2 < crit, "χ² = {chi2} on {df} df (critical {crit})");
}

#[test]
fn the_tail_beyond_the_base_strip() {
    let x = draws(3);
    let tail: Vec<f64> = x.iter().filter(|v| **v > R).map(|v| v - R).collect();
    // P(X > r) = e^{−r}: a binomial count.
    let p = (-R).exp();
    let mean = N as f64 * p;
    let sd = (N as f64 * p * (1.0 - p)).sqrt();
    assert!(
        (tail.len() as f64 - mean).abs() < 3.3 * sd,
        "{} tail draws, expected {mean} ± {sd}",
        tail.len()
    );
    // Memoryless: X − r | X > r is unit exponential (KS, α = 0.001).
    let mut t = tail;
    t.sort_by(f64::total_cmp);
    let n = t.len() as f64;
    let d = t
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let f = 1.0 - (-v).exp();
            (f - i as f64 / n).abs().max(((i + 1) as f64 / n - f).abs())
        })
        .fold(0.0, f64::max);
    assert!(d < 1.95 / n.sqrt(), "KS D = {d} on {n} tail draws");
}

#[test]
fn mean_and_variance() {
    let x = draws(4);
    let n = N as f64;
    let mean = x.iter().sum::<f64>() / n;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    // sd of the mean 1/√n; of the variance √(μ₄ − σ⁴)/√n = √8/√n.
    assert!((mean - 1.0).abs() < 4.0 / n.sqrt(), "{mean}");
    assert!((var - 1.0).abs() < 4.0 * 8f64.sqrt() / n.sqrt(), "{var}");
}
