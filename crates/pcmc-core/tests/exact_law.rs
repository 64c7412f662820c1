//! The SSA against exact laws.

use pcmc_core::model::Network;
use pcmc_core::rng::{Purpose, StreamKey};
use pcmc_core::ssa::{BlockScratch, Outcome, Ssa};
use statrs::distribution::{ChiSquared, ContinuousCDF, Discrete, DiscreteCDF, Poisson};

/// Pearson chi-square statistic of `counts` against Poisson(`mean`), pooling
/// the tails so every expected count is at least 5. Returns (statistic, df).
fn chi_square_poisson(samples: &[u64], mean: f64) -> (f64, f64) {
    let n = samples.len() as f64;
    let pois = Poisson::new(mean).unwrap();
    // Bins [0..lo), lo, lo+1, ..., hi, [hi+1..): choose lo/hi with expected ≥ 5.
    let mut lo = 0u64;
    while pois.cdf(lo) * n < 5.0 {
        lo += 1;
    }
    let mut hi = lo;
    while (1.0 - pois.cdf(hi + 1)) * n >= 5.0 && pois.pmf(hi + 1) * n >= 5.0 {
        hi += 1;
    }
    let mut observed = vec![0f64; (hi - lo + 2) as usize];
    for &x in samples {
        let b = if x <= lo {
            0
        } else if x > hi {
            observed.len() - 1
        } else {
            (x - lo) as usize
        };
        observed[b] += 1.0;
    }
    let mut expected = vec![0f64; observed.len()];
    expected[0] = pois.cdf(lo) * n;
    for x in lo + 1..=hi {
        expected[(x - lo) as usize] = pois.pmf(x) * n;
    }
    let last = expected.len() - 1;
    expected[last] = (1.0 - pois.cdf(hi)) * n;
    let stat = observed
        .iter()
        .zip(&expected)
        .map(|(o, e)| (o - e) * (o - e) / e)
        .sum();
    (stat, (observed.len() - 1) as f64)
}

/// Immigration–death with λ = 10, μ = 0.5 from x0 = 0: X(50) ~ Poisson(20·(1 − e^{−25})),
/// i.e. Poisson(20) to double precision. 20 000 fixed-seed samples, α = 0.001.
#[test]
fn immigration_death_is_poisson_at_t50() {
    let net = Network::immigration_death();
    let ssa = Ssa::new(&net, &[10.0, 0.5], &[u64::MAX], u64::MAX);
    let mean = 20.0 * (1.0 - (-25.0f64).exp());
    let n = 20_000;
    let mut cum = [0.0; 2];
    let scalar: Vec<u64> = (0..n)
        .map(|i| {
            let mut x = [0u64];
            let mut rng = StreamKey::new(2024, 0, 0, 0, i, Purpose::Test).rng();
            let (o, _) = ssa.advance(&mut x, 0.0, 50.0, &mut rng, &mut cum);
            assert_eq!(o, Outcome::Reached);
            x[0]
        })
        .collect();
    let (stat, df) = chi_square_poisson(&scalar, mean);
    let crit = ChiSquared::new(df).unwrap().inverse_cdf(0.999);
    assert!(
        stat < crit,
        "chi2 = {stat:.2} on {df} df, critical {crit:.2}"
    );
    let m = scalar.iter().sum::<u64>() as f64 / n as f64;
    // Mean within 4 standard errors of 20.
    assert!(
        (m - mean).abs() < 4.0 * (mean / n as f64).sqrt(),
        "mean {m}"
    );

    // The block kernel gives the very same samples.
    let mut scratch = BlockScratch::default();
    let width = 64;
    for b in 0..(n as usize / width) {
        let mut block = vec![0u64; width];
        let mut rngs: Vec<_> = (0..width)
            .map(|j| StreamKey::new(2024, 0, 0, 0, (b * width + j) as u64, Purpose::Test).rng())
            .collect();
        let mut outcomes = vec![Outcome::Reached; width];
        ssa.advance_block(
            &mut block,
            width,
            0.0,
            50.0,
            &mut rngs,
            &mut outcomes,
            &mut scratch,
        );
        assert_eq!(&block[..], &scalar[b * width..(b + 1) * width]);
    }
}

/// The same law from a non-zero start: Binomial(x0, e^{−μt}) + Poisson(λ/μ(1 − e^{−μt})) has
/// mean x0 e^{−μt} + λ/μ (1 − e^{−μt}); at t = 1 from x0 = 40 check the mean and variance.
#[test]
fn immigration_death_transient_moments() {
    let net = Network::immigration_death();
    let ssa = Ssa::new(&net, &[10.0, 0.5], &[u64::MAX], u64::MAX);
    let p = (-0.5f64).exp();
    let m_imm = 20.0 * (1.0 - p);
    let mean = 40.0 * p + m_imm;
    let var = 40.0 * p * (1.0 - p) + m_imm;
    let n = 20_000u64;
    let mut cum = [0.0; 2];
    let xs: Vec<f64> = (0..n)
        .map(|i| {
            let mut x = [40u64];
            let mut rng = StreamKey::new(77, 0, 0, 0, i, Purpose::Test).rng();
            ssa.advance(&mut x, 0.0, 1.0, &mut rng, &mut cum);
            x[0] as f64
        })
        .collect();
    let m = xs.iter().sum::<f64>() / n as f64;
    let v = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1) as f64;
    assert!(
        (m - mean).abs() < 4.0 * (var / n as f64).sqrt(),
        "mean {m} vs {mean}"
    );
    // Var of the sample variance ≈ 2σ⁴/(n−1) for near-normal data; allow 5 SE.
    assert!(
        (v - var).abs() < 5.0 * var * (2.0 / (n - 1) as f64).sqrt(),
        "var {v} vs {var}"
    );
}
