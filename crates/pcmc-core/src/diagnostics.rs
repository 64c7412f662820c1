//! MCMC diagnostics: posterior summaries, bulk effective sample size and
//! rank-normalised split-R̂, following Vehtari, Gelman, Simpson, Carpenter &
//! Bürkner (2021), "Rank-normalization, folding, and localization: an improved
//! R̂ for assessing convergence of MCMC", Bayesian Analysis 16(2), with the
//! autocorrelation estimator and Geyer's initial monotone sequence as in Stan.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal};

/// Posterior summary of one parameter over all chains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamSummary {
    /// Posterior mean.
    pub mean: f64,
    /// Posterior standard deviation.
    pub sd: f64,
    /// 2.5 % quantile.
    pub q025: f64,
    /// Median.
    pub q50: f64,
    /// 97.5 % quantile.
    pub q975: f64,
    /// Bulk effective sample size (`None` for constant or too-short chains).
    pub ess: Option<f64>,
    /// Tail effective sample size ([`ess_tail`]).
    pub ess_tail: Option<f64>,
    /// Rank-normalised split-R̂ (`None` for constant or too-short chains).
    pub rhat: Option<f64>,
}

/// Summarises one parameter from its draws per chain.
///
/// # Panics
/// If there are no draws at all.
pub fn summarize(chains: &[Vec<f64>]) -> ParamSummary {
    let mut all: Vec<f64> = chains.iter().flatten().copied().collect();
    assert!(!all.is_empty(), "no draws to summarise");
    let n = all.len() as f64;
    let mean = all.iter().sum::<f64>() / n;
    let sd = if all.len() > 1 {
        (all.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    all.sort_by(f64::total_cmp);
    let refs: Vec<&[f64]> = chains.iter().map(|c| c.as_slice()).collect();
    ParamSummary {
        mean,
        sd,
        q025: quantile_sorted(&all, 0.025),
        q50: quantile_sorted(&all, 0.5),
        q975: quantile_sorted(&all, 0.975),
        ess: ess_bulk(&refs),
        ess_tail: ess_tail(&refs),
        rhat: rhat(&refs),
    }
}

/// The `p` quantile of sorted data by linear interpolation (R's type 7).
pub fn quantile_sorted(sorted: &[f64], p: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * p;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Splits each chain into its first and second half (dropping a middle draw
/// of an odd-length chain), truncating all chains to the shortest length.
fn split(chains: &[&[f64]]) -> Vec<Vec<f64>> {
    let n = chains.iter().map(|c| c.len()).min().unwrap_or(0);
    let h = n / 2;
    let mut out = Vec::with_capacity(2 * chains.len());
    for c in chains {
        out.push(c[..h].to_vec());
        out.push(c[n - h..n].to_vec());
    }
    out
}

/// Average ranks (1-based) of the pooled draws, per chain.
fn ranks(chains: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let mut idx: Vec<(f64, usize, usize)> = Vec::new();
    for (c, ch) in chains.iter().enumerate() {
        for (i, x) in ch.iter().enumerate() {
            idx.push((*x, c, i));
        }
    }
    idx.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut out: Vec<Vec<f64>> = chains.iter().map(|c| vec![0.0; c.len()]).collect();
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && idx[j + 1].0 == idx[i].0 {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for e in &idx[i..=j] {
            out[e.1][e.2] = rank;
        }
        i = j + 1;
    }
    out
}

/// Rank-normalises pooled draws: `Φ⁻¹((r − 3/8)/(S + 1/4))` with average ranks
/// for ties.
fn rank_normalise(chains: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let s = chains.iter().map(|c| c.len()).sum::<usize>() as f64;
    let normal = Normal::standard();
    ranks(chains)
        .into_iter()
        .map(|c| {
            c.into_iter()
                .map(|r| normal.inverse_cdf((r - 0.375) / (s + 0.25)))
                .collect()
        })
        .collect()
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

fn var(x: &[f64]) -> f64 {
    let m = mean(x);
    x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (x.len() as f64 - 1.0)
}

/// Effective sample size of chains of equal length: Stan's estimator
/// (multi-chain autocorrelations, Geyer's initial positive and monotone
/// sequences), step for step as in ArviZ's `_ess` (Vehtari et al. 2021,
/// eqs. 10–11; tested against ArviZ 0.23). `None` if the chains are shorter
/// than 4 draws or constant.
pub fn ess(chains: &[Vec<f64>]) -> Option<f64> {
    let m = chains.len();
    let n = chains.iter().map(|c| c.len()).min()?;
    if m == 0 || n < 4 {
        return None;
    }
    let means: Vec<f64> = chains.iter().map(|c| mean(&c[..n])).collect();
    // Mean over chains of the biased lag-t autocovariance.
    let acov = |t: usize| -> f64 {
        let mut s = 0.0;
        for (c, mu) in chains.iter().zip(&means) {
            let x = &c[..n];
            let mut a = 0.0;
            for i in 0..n - t {
                a += (x[i] - mu) * (x[i + t] - mu);
            }
            s += a / n as f64;
        }
        s / m as f64
    };
    let nf = n as f64;
    let mean_var = acov(0) * nf / (nf - 1.0);
    let mut var_plus = mean_var * (nf - 1.0) / nf;
    if m > 1 {
        var_plus += var(&means);
    }
    if !(var_plus > 0.0) || !var_plus.is_finite() {
        return None;
    }
    let rho = |t: usize| 1.0 - (mean_var - acov(t)) / var_plus;
    let mut rho_hat = vec![0.0; n];
    let mut even = 1.0;
    rho_hat[0] = even;
    let mut odd = rho(1);
    rho_hat[1] = odd;
    // Geyer's initial positive sequence: sums of adjacent pairs.
    let mut t = 1;
    while t + 3 < n && even + odd > 0.0 {
        even = rho(t + 1);
        odd = rho(t + 2);
        if even + odd >= 0.0 {
            rho_hat[t + 1] = even;
            rho_hat[t + 2] = odd;
        }
        t += 2;
    }
    // The last pair examined is excluded; its even term is used if positive.
    // (`next` = max_t + 1 of ArviZ, where max_t can be −1.)
    let next = t - 1;
    if even > 0.0 {
        rho_hat[next] = even;
    }
    // Geyer's initial monotone sequence.
    let mut t = 1;
    while t + 3 <= next {
        if rho_hat[t + 1] + rho_hat[t + 2] > rho_hat[t - 1] + rho_hat[t] {
            let v = (rho_hat[t - 1] + rho_hat[t]) / 2.0;
            rho_hat[t + 1] = v;
            rho_hat[t + 2] = v;
        }
        t += 2;
    }
    let total = (m * n) as f64;
    let tau = -1.0 + 2.0 * rho_hat[..next].iter().sum::<f64>() + rho_hat[next];
    let tau = tau.max(1.0 / total.log10());
    Some(total / tau)
}

/// Bulk ESS: [`ess`] of the rank-normalised split chains.
pub fn ess_bulk(chains: &[&[f64]]) -> Option<f64> {
    let s = split(chains);
    if s.is_empty() || s[0].len() < 2 {
        return None;
    }
    ess(&rank_normalise(&s))
}

/// ESS of the `p` quantile: [`ess`] of the split chains of the indicator
/// `x ≤ q_p`, with `q_p` the pooled type-7 quantile (Vehtari et al. 2021,
/// section 4.3).
pub fn ess_quantile(chains: &[&[f64]], p: f64) -> Option<f64> {
    let n = chains.iter().map(|c| c.len()).min()?;
    if n < 4 {
        return None;
    }
    let mut all: Vec<f64> = chains.iter().flat_map(|c| c[..n].iter().copied()).collect();
    all.sort_by(f64::total_cmp);
    let q = quantile_sorted(&all, p);
    let ind: Vec<Vec<f64>> = chains
        .iter()
        .map(|c| {
            c[..n]
                .iter()
                .map(|x| f64::from(u8::from(*x <= q)))
                .collect()
        })
        .collect();
    let refs: Vec<&[f64]> = ind.iter().map(|c| c.as_slice()).collect();
    ess(&split(&refs))
}

/// Tail ESS: the smaller of the ESS of the 5 % and the 95 % quantiles
/// (Vehtari et al. 2021): how well the chains pin down the posterior
/// interval's ends.
pub fn ess_tail(chains: &[&[f64]]) -> Option<f64> {
    let lo = ess_quantile(chains, 0.05)?;
    let hi = ess_quantile(chains, 0.95)?;
    Some(lo.min(hi))
}

/// Autocorrelation of one chain at lags `0..=max_lag` (biased estimator,
/// lag 0 = 1; `None` for a constant chain).
pub fn autocorrelation(x: &[f64], max_lag: usize) -> Option<Vec<f64>> {
    let n = x.len();
    if n < 2 {
        return None;
    }
    let mu = mean(x);
    let c0: f64 = x.iter().map(|v| (v - mu) * (v - mu)).sum();
    if !(c0 > 0.0) {
        return None;
    }
    Some(
        (0..=max_lag.min(n - 1))
            .map(|t| {
                (0..n - t)
                    .map(|i| (x[i] - mu) * (x[i + t] - mu))
                    .sum::<f64>()
                    / c0
            })
            .collect(),
    )
}

/// The rank (1-based, ties averaged) of every draw among all chains' draws,
/// per chain: the input of rank plots (Vehtari et al. 2021, section 4.1).
pub fn pooled_ranks(chains: &[&[f64]]) -> Vec<Vec<f64>> {
    let owned: Vec<Vec<f64>> = chains.iter().map(|c| c.to_vec()).collect();
    ranks(&owned)
}

fn rhat_basic(chains: &[Vec<f64>]) -> Option<f64> {
    let n = chains.first()?.len();
    if n < 2 || chains.len() < 2 {
        return None;
    }
    let means: Vec<f64> = chains.iter().map(|c| mean(c)).collect();
    let w = chains.iter().map(|c| var(c)).sum::<f64>() / chains.len() as f64;
    let b_over_n = var(&means);
    if !(w > 0.0) {
        return None;
    }
    let nf = n as f64;
    Some((((nf - 1.0) / nf * w + b_over_n) / w).sqrt())
}

/// Rank-normalised split-R̂: the larger of the bulk R̂ (rank-normalised split
/// chains) and the tail R̂ (rank-normalised folded split chains). Defined for
/// one chain too (its two halves are compared).
pub fn rhat(chains: &[&[f64]]) -> Option<f64> {
    let s = split(chains);
    if s.is_empty() || s[0].len() < 2 {
        return None;
    }
    let bulk = rhat_basic(&rank_normalise(&s))?;
    let mut all: Vec<f64> = s.iter().flatten().copied().collect();
    all.sort_by(f64::total_cmp);
    let med = quantile_sorted(&all, 0.5);
    let folded: Vec<Vec<f64>> = s
        .iter()
        .map(|c| c.iter().map(|x| (x - med).abs()).collect())
        .collect();
    let tail = rhat_basic(&rank_normalise(&folded)).unwrap_or(bulk);
    Some(bulk.max(tail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{Purpose, StreamKey};
    use rand_distr::{Distribution, StandardNormal};

    fn ar1(phi: f64, n: usize, seed: u64, shift: f64) -> Vec<f64> {
        let mut rng = StreamKey::new(seed, 0, 0, 0, 0, Purpose::Test).rng();
        let mut x = 0.0;
        (0..n)
            .map(|_| {
                let e: f64 = StandardNormal.sample(&mut rng);
                x = phi * x + e;
                x + shift
            })
            .collect()
    }

    #[test]
    fn ess_of_iid_and_ar1() {
        // iid: ESS ≈ n; AR(1) with φ: ESS ≈ n (1−φ)/(1+φ).
        let chains: Vec<Vec<f64>> = (0..4).map(|c| ar1(0.0, 5000, c, 0.0)).collect();
        let refs: Vec<&[f64]> = chains.iter().map(|c| c.as_slice()).collect();
        let e = ess_bulk(&refs).unwrap();
        assert!((e / 20000.0 - 1.0).abs() < 0.1, "{e}");
        let chains: Vec<Vec<f64>> = (0..4).map(|c| ar1(0.8, 20000, c + 10, 0.0)).collect();
        let refs: Vec<&[f64]> = chains.iter().map(|c| c.as_slice()).collect();
        let e = ess_bulk(&refs).unwrap();
        let theory = 80000.0 * 0.2 / 1.8;
        assert!((e / theory - 1.0).abs() < 0.15, "{e} vs {theory}");
        let r = rhat(&refs).unwrap();
        assert!(r < 1.01, "{r}");
    }

    #[test]
    fn rhat_detects_disagreement() {
        let a = ar1(0.5, 2000, 1, 0.0);
        let b = ar1(0.5, 2000, 2, 3.0);
        assert!(rhat(&[&a, &b]).unwrap() > 1.5);
    }

    #[test]
    fn summary_of_constant_and_short() {
        let s = summarize(&[vec![2.0; 10]]);
        assert_eq!((s.mean, s.sd, s.q50), (2.0, 0.0, 2.0));
        assert_eq!(s.ess, None);
        assert_eq!(s.rhat, None);
        let s = summarize(&[vec![1.0, 2.0, 3.0, 4.0, 5.0]]);
        assert_eq!(s.q50, 3.0);
        assert!((s.q025 - 1.1).abs() < 1e-12);
    }
}
