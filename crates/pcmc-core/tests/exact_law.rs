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

/// The exact law at time `t` of a closed network from `x0`: the reachable
/// states (breadth-first), the generator built from mass-action hazards
/// written here independently of the kernel (`θ_j · Π_s C(x_s, r_js)`), and
/// `p(t) = p(0)·exp(Qt)` by uniformisation (Jensen's method: a Poisson
/// mixture of powers of the stochastic matrix `I + Q/Λ`, summed until the
/// Poisson tail is below 10^−15).
fn exact_transient_law(
    net: &Network,
    theta: &[f64],
    x0: &[u64],
    t: f64,
) -> (Vec<Vec<u64>>, Vec<f64>) {
    let binom = |x: u64, k: u32| -> f64 {
        (0..u64::from(k)).fold(1.0, |c, i| {
            if x < i + 1 {
                0.0
            } else {
                c * (x - i) as f64 / (i + 1) as f64
            }
        })
    };
    let mut states = vec![x0.to_vec()];
    let mut edges: Vec<(usize, usize, f64)> = Vec::new();
    let mut i = 0;
    while i < states.len() {
        let x = states[i].clone();
        for r in net.reactions() {
            let h = theta[r.rate.expect("a parameter rate")]
                * r.reactants
                    .iter()
                    .map(|&(s, k)| binom(x[s], k))
                    .product::<f64>();
            if h == 0.0 {
                continue;
            }
            let mut y = x.clone();
            for &(s, d) in &r.change {
                y[s] = (y[s] as i64 + d) as u64;
            }
            let j = match states.iter().position(|z| *z == y) {
                Some(j) => j,
                None => {
                    states.push(y);
                    states.len() - 1
                }
            };
            edges.push((i, j, h));
        }
        i += 1;
        assert!(states.len() < 500, "the network is not closed and small");
    }
    let n = states.len();
    let mut exit = vec![0.0; n];
    for &(a, _, h) in &edges {
        exit[a] += h;
    }
    let lambda = exit.iter().copied().fold(0.0, f64::max);
    let mut p = vec![0.0; n];
    p[0] = 1.0;
    let mut out = vec![0.0; n];
    let mut weight = (-lambda * t).exp();
    let mut mass = 0.0;
    let mut k = 0u32;
    while 1.0 - mass > 1e-15 && k < 10_000 {
        for (o, v) in out.iter_mut().zip(&p) {
            *o += weight * v;
        }
        mass += weight;
        // p ← p·(I + Q/Λ)
        let mut next: Vec<f64> = p
            .iter()
            .zip(&exit)
            .map(|(v, e)| v * (1.0 - e / lambda))
            .collect();
        for &(a, b, h) in &edges {
            next[b] += p[a] * h / lambda;
        }
        p = next;
        k += 1;
        weight *= lambda * t / f64::from(k);
    }
    (states, out)
}

/// Pearson χ² of SSA samples against the exact law over `states`, pooling
/// the least likely states into one bin until every expected count is at
/// least 5. Returns (statistic, degrees of freedom).
fn chi_square_law(samples: &[Vec<u64>], states: &[Vec<u64>], probs: &[f64]) -> (f64, f64) {
    let n = samples.len() as f64;
    let mut order: Vec<usize> = (0..states.len()).collect();
    order.sort_by(|a, b| probs[*b].total_cmp(&probs[*a]));
    let mut bin_of = vec![0usize; states.len()];
    let mut expected: Vec<f64> = Vec::new();
    let mut pooled = None;
    for &s in &order {
        if probs[s] * n >= 5.0 {
            bin_of[s] = expected.len();
            expected.push(probs[s] * n);
        } else {
            let b = *pooled.get_or_insert_with(|| {
                expected.push(0.0);
                expected.len() - 1
            });
            bin_of[s] = b;
            expected[b] += probs[s] * n;
        }
    }
    let mut observed = vec![0.0; expected.len()];
    for x in samples {
        let s = states
            .iter()
            .position(|z| z == x)
            .expect("the SSA reached a state the generator cannot");
        observed[bin_of[s]] += 1.0;
    }
    let stat = observed
        .iter()
        .zip(&expected)
        .map(|(o, e)| (o - e) * (o - e) / e)
        .sum();
    (stat, (expected.len() - 1) as f64)
}

fn spec(
    name: &str,
    reactants: &[(&str, u32)],
    products: &[(&str, u32)],
    rate: &str,
) -> pcmc_core::model::ReactionSpec {
    let terms = |ts: &[(&str, u32)]| {
        ts.iter()
            .map(|(s, c)| pcmc_core::model::Term {
                species: (*s).into(),
                count: *c,
            })
            .collect()
    };
    pcmc_core::model::ReactionSpec {
        name: name.into(),
        reactants: terms(reactants),
        products: terms(products),
        rate: rate.into(),
    }
}

fn check_transient_law(net: &Network, theta: &[f64], x0: &[u64], t: f64, seed: u64) {
    let (states, probs) = exact_transient_law(net, theta, x0, t);
    assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    let ssa = Ssa::new(net, theta, &vec![u64::MAX; x0.len()], u64::MAX);
    let mut cum = vec![0.0; net.reactions().len()];
    let samples: Vec<Vec<u64>> = (0..20_000u64)
        .map(|i| {
            let mut x = x0.to_vec();
            let mut rng = StreamKey::new(seed, 0, 0, 0, i, Purpose::Test).rng();
            let (o, _) = ssa.advance(&mut x, 0.0, t, &mut rng, &mut cum);
            assert_eq!(o, Outcome::Reached);
            x
        })
        .collect();
    let (stat, df) = chi_square_law(&samples, &states, &probs);
    let crit = ChiSquared::new(df).unwrap().inverse_cdf(0.999);
    assert!(
        stat < crit,
        "χ² = {stat:.2} on {df} df ≥ critical {crit:.2} ({} states)",
        states.len()
    );
}

/// Reversible dimerisation 2A ⇌ B from 12 A: the forward hazard is
/// c₁·A(A−1)/2, second order in one species. 20 000 samples at t = 0.7
/// against the exact law (α = 0.001).
#[test]
fn dimerisation_transient_law() {
    let net = Network::new(
        vec!["A".into(), "B".into()],
        vec!["c1".into(), "c2".into()],
        &[
            spec("dimerise", &[("A", 2)], &[("B", 1)], "c1"),
            spec("dissociate", &[("B", 1)], &[("A", 2)], "c2"),
        ],
    )
    .unwrap();
    check_transient_law(&net, &[0.08, 0.6], &[12, 0], 0.7, 31);
}

/// A + B → C with C → A + B from (9, 6, 0): the forward hazard is c₁·A·B,
/// second order in two species.
#[test]
fn bimolecular_transient_law() {
    let net = Network::new(
        vec!["A".into(), "B".into(), "C".into()],
        vec!["c1".into(), "c2".into()],
        &[
            spec("bind", &[("A", 1), ("B", 1)], &[("C", 1)], "c1"),
            spec("unbind", &[("C", 1)], &[("A", 1), ("B", 1)], "c2"),
        ],
    )
    .unwrap();
    check_transient_law(&net, &[0.05, 0.8], &[9, 6, 0], 0.9, 32);
}
