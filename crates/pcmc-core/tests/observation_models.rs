//! Every observation model's likelihood, checked against the exact one.
//!
//! Immigration–death data observed through each noise model (parameters
//! in θ), a linear combination, missing values and a fixed initial count.
//! The exact likelihood comes from the forward algorithm with densities
//! written here from `statrs`' distributions, independently of pcmc's own
//! (a wrong pcmc density would otherwise cancel out). For each case:
//! - the estimate is unbiased: the mean of `exp(ℓ̂ − ℓ)` over 400 passes
//!   of 40 particles is 1 within 4 standard errors;
//! - it is consistent: one pass of 20 000 particles is within 0.05 nats;
//! - the exact likelihood tells the right model from a near miss (the
//!   discrimination check): the case's "wrong" density (e.g. NB's `k` and
//!   `1/k` swapped) gives an exact likelihood that the estimates reject.

mod common;

use pcmc_core::filter::FilterProblem;
use pcmc_core::model::Network;
use pcmc_core::observation::{
    Data, InitialCount, InitialPrior, Noise, Observable, Observations, Param,
};
use pcmc_core::prelude::*;
use pcmc_core::rng::{Purpose, StreamKey};
use pcmc_core::simulate::simulate;
use pcmc_core::{LikelihoodExecutor, serial};
use statrs::distribution::{
    Binomial, Continuous, Discrete, LogNormal, NegativeBinomial, Normal, Poisson,
};

const K: usize = 120;

/// An observation density written independently: `ln p(y | v)`.
type Density = Box<dyn Fn(f64, u64) -> f64>;

struct Case {
    name: &'static str,
    /// θ: λ, μ, then the noise parameters.
    theta: Vec<f64>,
    names: Vec<&'static str>,
    terms: Vec<(usize, u64)>,
    noise: Noise,
    /// The density at θ, and a plausible wrong one.
    right: Density,
    wrong: Density,
    /// Rows whose value is removed.
    missing: Vec<usize>,
    initial: InitialCount,
}

fn gaussian(sd: f64) -> Density {
    Box::new(move |y, v| Normal::new(v as f64, sd).unwrap().ln_pdf(y))
}

fn poisson(rho: f64) -> Density {
    Box::new(move |y, v| {
        let m = rho * v as f64;
        if m == 0.0 {
            return if y == 0.0 { 0.0 } else { f64::NEG_INFINITY };
        }
        Poisson::new(m).unwrap().ln_pmf(y as u64)
    })
}

/// NB2 with mean `ρv` and size `k`: statrs' `NegativeBinomial(r = k,
/// p = k/(k+μ))` counts failures before the `r`-th success, mean `μ`.
fn neg_binomial(rho: f64, k: f64) -> Density {
    Box::new(move |y, v| {
        let m = rho * v as f64;
        if m == 0.0 {
            return if y == 0.0 { 0.0 } else { f64::NEG_INFINITY };
        }
        NegativeBinomial::new(k, k / (k + m))
            .unwrap()
            .ln_pmf(y as u64)
    })
}

fn binomial(rho: f64) -> Density {
    Box::new(move |y, v| Binomial::new(rho, v).unwrap().ln_pmf(y as u64))
}

fn log_normal(sd: f64) -> Density {
    Box::new(move |y, v| {
        if v == 0 {
            return f64::NEG_INFINITY;
        }
        LogNormal::new((v as f64).ln(), sd).unwrap().ln_pdf(y)
    })
}

fn cases() -> Vec<Case> {
    let t = |i| Param::Theta(i);
    let poisson1 = InitialCount::Poisson(15.0);
    vec![
        Case {
            name: "gaussian, sd inferred",
            theta: vec![10.0, 0.5, 2.0],
            names: vec!["sd"],
            terms: vec![(0, 1)],
            noise: Noise::Gaussian { sd: t(2) },
            right: gaussian(2.0),
            wrong: gaussian(4.0), // the variance read as the sd
            missing: vec![],
            initial: poisson1,
        },
        Case {
            name: "poisson, rho inferred",
            theta: vec![10.0, 0.5, 0.6],
            names: vec!["rho"],
            terms: vec![(0, 1)],
            noise: Noise::Poisson { rho: t(2) },
            right: poisson(0.6),
            wrong: poisson(1.0), // ρ ignored
            missing: vec![],
            initial: poisson1,
        },
        Case {
            name: "negative binomial, rho and k inferred",
            theta: vec![10.0, 0.5, 0.8, 2.5],
            names: vec!["rho", "k"],
            terms: vec![(0, 1)],
            noise: Noise::NegativeBinomial {
                rho: t(2),
                dispersion: t(3),
                inverse: false,
            },
            right: neg_binomial(0.8, 2.5),
            wrong: neg_binomial(0.8, 1.0 / 2.5), // k and 1/k swapped
            missing: vec![],
            initial: poisson1,
        },
        Case {
            name: "negative binomial, phi = 1/k inferred",
            theta: vec![10.0, 0.5, 0.25],
            names: vec!["phi"],
            terms: vec![(0, 1)],
            noise: Noise::NegativeBinomial {
                rho: Param::Fixed(1.0),
                dispersion: t(2),
                inverse: true,
            },
            right: neg_binomial(1.0, 4.0),
            wrong: neg_binomial(1.0, 0.25),
            missing: vec![],
            initial: poisson1,
        },
        Case {
            name: "binomial, rho inferred",
            theta: vec![10.0, 0.5, 0.35],
            names: vec!["rho"],
            terms: vec![(0, 1)],
            noise: Noise::Binomial { rho: t(2) },
            right: binomial(0.35),
            wrong: binomial(0.45),
            missing: vec![],
            initial: poisson1,
        },
        Case {
            name: "log-normal, sd inferred",
            theta: vec![10.0, 0.5, 0.3],
            names: vec!["sd"],
            terms: vec![(0, 1)],
            noise: Noise::LogNormal { sd: t(2) },
            right: log_normal(0.3),
            wrong: log_normal(0.45),
            missing: vec![],
            initial: poisson1,
        },
        Case {
            name: "a linear combination (3·X) through poisson",
            theta: vec![10.0, 0.5, 0.4],
            names: vec!["rho"],
            terms: vec![(0, 3)],
            noise: Noise::Poisson { rho: t(2) },
            right: Box::new(|y, v| poisson(0.4)(y, 3 * v)),
            wrong: Box::new(|y, v| poisson(0.4)(y, v)), // coefficient dropped
            missing: vec![],
            initial: poisson1,
        },
        Case {
            name: "missing values (rows 2 and 3 of 5)",
            theta: vec![10.0, 0.5, 0.7],
            names: vec!["rho"],
            terms: vec![(0, 1)],
            noise: Noise::Poisson { rho: t(2) },
            right: poisson(0.7),
            wrong: poisson(0.7), // the wrong case weighs the missing rows at y = 0
            missing: vec![1, 2],
            initial: poisson1,
        },
        Case {
            name: "a fixed initial count",
            theta: vec![10.0, 0.5, 0.7],
            names: vec!["rho"],
            terms: vec![(0, 1)],
            noise: Noise::Poisson { rho: t(2) },
            right: poisson(0.7),
            wrong: poisson(0.7), // the wrong case starts from Poisson(12)
            missing: vec![],
            initial: InitialCount::Fixed(12),
        },
    ]
}

fn problem(case: &Case, particles: usize) -> FilterProblem {
    let net = Network::immigration_death();
    let mut names: Vec<String> = net.parameters().to_vec();
    names.extend(case.names.iter().map(|s| s.to_string()));
    let initial = InitialPrior::with_counts(&net, vec![case.initial]).unwrap();
    let obs = vec![Observable {
        name: "y".into(),
        terms: case.terms.clone(),
        noise: case.noise,
    }];
    let times = vec![0.5, 1.0, 2.0, 3.5, 5.0];
    let traj = simulate(
        &net,
        &case.theta,
        &initial,
        &obs,
        None,
        0.0,
        &times,
        &[u64::MAX],
        u64::MAX,
        StreamKey::new(11, 0, 0, 0, 0, Purpose::Simulate),
    );
    let mut rows = traj.observations;
    for &r in &case.missing {
        rows[r][0] = f64::NAN;
    }
    let data = Data::from_columns(times, &["y".to_string()], rows).unwrap();
    let observations = Observations::new(obs, data, names, 1).unwrap();
    FilterProblem::from_observations(
        net,
        observations,
        initial,
        0.0,
        FilterConfig::new(particles, 1),
        None,
    )
    .unwrap()
}

/// The exact log-likelihood with density `d` (missing rows weigh 1, or
/// `y = 0` when `zero_missing`), from `initial` instead of the problem's.
fn exact(problem: &FilterProblem, theta: &[f64], d: &Density, zero_missing: bool) -> f64 {
    let data = problem.data();
    common::exact_loglik_with(problem, theta, K, |i, x| {
        let y = data.row(i)[0];
        match (y.is_nan(), zero_missing) {
            (true, false) => 1.0,
            (true, true) => d(0.0, x).exp(),
            _ => d(y, x).exp(),
        }
    })
}

/// `(mean ratio, its standard error)` of `exp(ℓ̂ − ℓ)` over 400 passes.
fn ratio(problem: &FilterProblem, theta: &[f64], exact: f64) -> (f64, f64) {
    let mut exec = serial();
    let ratios: Vec<f64> = (0..400)
        .map(|r| {
            let key = FilterKey {
                seed: 5,
                chain: 0,
                iteration: r,
            };
            let out = exec.log_likelihood(problem, theta, key).unwrap();
            (out.loglik - exact).exp()
        })
        .collect();
    let n = ratios.len() as f64;
    let mean = ratios.iter().sum::<f64>() / n;
    let var = ratios.iter().map(|r| (r - mean) * (r - mean)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}

#[test]
fn every_observation_model_matches_its_exact_likelihood() {
    let mut failures = Vec::new();
    for case in cases() {
        let p = problem(&case, 40);
        let right = exact(&p, &case.theta, &case.right, false);
        let (mean, se) = ratio(&p, &case.theta, right);
        let ok = (mean - 1.0).abs() < 4.0 * se && se < 0.2;
        // Consistency: one large pass.
        let big = problem(&case, 20_000);
        let one = serial()
            .log_likelihood(
                &big,
                &case.theta,
                FilterKey {
                    seed: 9,
                    chain: 0,
                    iteration: 0,
                },
            )
            .unwrap()
            .loglik;
        let close = (one - right).abs() < 0.05;
        // Discrimination: the wrong density's (or the wrong missing-value
        // or initial-law handling's) exact likelihood is rejected.
        let wrong = match case.name {
            n if n.starts_with("missing") => exact(&p, &case.theta, &case.wrong, true),
            n if n.starts_with("a fixed") => {
                let net = Network::immigration_death();
                let alt = FilterProblem::from_observations(
                    net.clone(),
                    p.observations().clone(),
                    InitialPrior::new(&net, vec![12.0]).unwrap(),
                    0.0,
                    FilterConfig::new(40, 1),
                    None,
                )
                .unwrap();
                exact(&alt, &case.theta, &case.wrong, false)
            }
            _ => exact(&p, &case.theta, &case.wrong, false),
        };
        let (wmean, wse) = ratio(&p, &case.theta, wrong);
        let discriminates = (wmean - 1.0).abs() > 4.0 * wse;
        eprintln!(
            "{}: ℓ = {right:.4}; mean ratio {mean:.4} ± {se:.4}; 20 000 particles {one:.4}; \
             wrong ℓ = {wrong:.4} gives {wmean:.4} ± {wse:.4}",
            case.name
        );
        if !(ok && close && discriminates) {
            failures.push(format!(
                "{}: unbiased {ok}, consistent {close}, discriminates {discriminates}",
                case.name
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The exact log-likelihood of immigration–death data whose column counts
/// the deaths since the previous observation, seen through `w(y, d)`
/// (a density; the row's datum `y`, `d` deaths), by the forward algorithm
/// on the count: over an interval `Δt` from `x₀`, the survivors of `x₀` are
/// Binomial(`x₀`, `p = e^{−μΔt}`), the `x₀ − s` others died; immigrants
/// that survive are Poisson(`a = λ/μ (1 − p)`) and those that died in the
/// interval an independent Poisson(`λΔt − a`) (Poisson thinning).
fn exact_death_incidence(
    problem: &FilterProblem,
    lambda: f64,
    mu: f64,
    x0: f64,
    w: &dyn Fn(f64, u64) -> f64,
) -> f64 {
    let pois = |m: f64| -> Vec<f64> {
        let d = Poisson::new(m.max(1e-300)).unwrap();
        (0..=K)
            .map(|i| {
                if m == 0.0 {
                    f64::from(u8::from(i == 0))
                } else {
                    d.pmf(i as u64)
                }
            })
            .collect()
    };
    let mut alpha = pois(x0);
    let (mut t, mut ll) = (problem.t0(), 0.0);
    let data = problem.data();
    for i in 0..data.len() {
        let dt = data.times()[i] - t;
        let y = data.row(i)[0];
        let weigh = |d: usize| if y.is_nan() { 1.0 } else { w(y, d as u64) };
        let p = (-mu * dt).exp();
        let a = lambda / mu * (1.0 - p);
        let (pa, pb) = (pois(a), pois(lambda * dt - a));
        // g(m): the weight of m deaths among the first count's particles,
        // summed over the immigrants that died.
        let g: Vec<f64> = (0..=K)
            .map(|m| (0..=K - m).map(|i| pb[i] * weigh(m + i)).sum())
            .collect();
        let mut next = vec![0.0; K + 1];
        for (x0, &al) in alpha.iter().enumerate() {
            if al == 0.0 {
                continue;
            }
            let b = Binomial::new(p, x0 as u64).unwrap();
            for s in 0..=x0 {
                let f = al * b.pmf(s as u64) * g[x0 - s];
                for x in s..=K {
                    next[x] += f * pa[x - s];
                }
            }
        }
        let z: f64 = next.iter().sum();
        ll += z.ln();
        alpha = next.iter().map(|v| v / z).collect();
        t = data.times()[i];
    }
    ll
}

/// Incidence: a column counting the deaths since the previous observation,
/// through Poisson reporting with ρ in θ, against the exact likelihood; the
/// near miss counts the wrong reaction (immigrations).
#[test]
fn incidence_matches_its_exact_likelihood() {
    let base = Network::immigration_death();
    let death = base
        .reactions()
        .iter()
        .position(|r| r.name == "death")
        .unwrap();
    let net = base.with_counter("deaths", &[death]).unwrap();
    let theta = vec![10.0, 0.5, 0.6];
    let mut names = base.parameters().to_vec();
    names.push("rho".into());
    let initial = InitialPrior::with_counts(
        &net,
        vec![InitialCount::Poisson(15.0), InitialCount::Fixed(0)],
    )
    .unwrap();
    let obs = vec![Observable {
        name: "deaths".into(),
        terms: vec![(1, 1)],
        noise: Noise::Poisson {
            rho: Param::Theta(2),
        },
    }];
    let times = vec![0.5, 1.0, 2.0, 3.5, 5.0];
    let caps = [u64::MAX, pcmc_core::model::COUNTER_CAP];
    let traj = simulate(
        &net,
        &theta,
        &initial,
        &obs,
        None,
        0.0,
        &times,
        &caps,
        u64::MAX,
        StreamKey::new(11, 0, 0, 0, 0, Purpose::Simulate),
    );
    // The simulated counter is the deaths of each interval: check it
    // against the states (deaths = x_prev + immigrants − x ≥ 0 is not
    // observable, but the counter must differ from the cumulative sum).
    let rows = traj.observations.clone();
    let data = Data::from_columns(times, &["deaths".to_string()], rows).unwrap();
    let make = |n: usize| {
        let observations = Observations::new(obs.clone(), data.clone(), names.clone(), 2).unwrap();
        let mut cfg = FilterConfig::new(n, 2);
        cfg.caps = caps.to_vec();
        FilterProblem::from_observations(net.clone(), observations, initial.clone(), 0.0, cfg, None)
            .unwrap()
    };
    let p = make(40);
    let right_w = poisson(0.6);
    let w = |y: f64, d: u64| right_w(y, d).exp();
    let right = exact_death_incidence(&p, 10.0, 0.5, 15.0, &w);
    let (mean, se) = ratio(&p, &theta, right);
    let one = serial()
        .log_likelihood(
            &make(20_000),
            &theta,
            FilterKey {
                seed: 9,
                chain: 0,
                iteration: 0,
            },
        )
        .unwrap()
        .loglik;
    // Near miss: the incidence of immigrations instead (the counter on the
    // wrong reaction): Σ_i Pois(i; λΔt) Pois(y; ρi) per row, independent.
    let mut wrong = 0.0;
    let mut t = 0.0;
    for i in 0..data.len() {
        let dt = data.times()[i] - t;
        let y = data.row(i)[0];
        let pi = Poisson::new(10.0 * dt).unwrap();
        wrong += (0..400u64)
            .map(|n| pi.pmf(n) * right_w(y, n).exp())
            .sum::<f64>()
            .ln();
        t = data.times()[i];
    }
    let (wmean, wse) = ratio(&p, &theta, wrong);
    eprintln!(
        "incidence: ℓ = {right:.4}; mean ratio {mean:.4} ± {se:.4}; 20 000 particles {one:.4}; \
         wrong ℓ = {wrong:.4} gives {wmean:.4} ± {wse:.4}"
    );
    assert!((mean - 1.0).abs() < 4.0 * se && se < 0.2, "{mean} ± {se}");
    assert!((one - right).abs() < 0.05, "{one} vs {right}");
    assert!((wmean - 1.0).abs() > 4.0 * wse, "{wmean} ± {wse}");
}

/// A covariate breakpoint: immigration at rate `λ·c(t)`, `c` = 1 until
/// t = 2.2 and 0.3 after (inside the interval (2, 3.5]), against the exact
/// likelihood by the forward algorithm stepped over both segments. The
/// near miss applies the new value one interval late (from 3.5). Every
/// kernel gives the same bytes.
#[test]
fn a_covariate_breakpoint_matches_its_exact_likelihood() {
    use pcmc_core::covariate::Covariates;
    let base = Network::immigration_death();
    let imm = base
        .reactions()
        .iter()
        .position(|r| r.name == "immigration")
        .unwrap();
    let net = base.with_covariate(imm, "open").unwrap();
    let cov = Covariates::new(
        vec!["open".into()],
        vec![0.0, 2.2],
        vec![vec![1.0], vec![0.3]],
    )
    .unwrap();
    let theta = vec![10.0, 0.5, 0.7];
    let mut names = base.parameters().to_vec();
    names.push("rho".into());
    let initial = InitialPrior::new(&net, vec![15.0]).unwrap();
    let obs = vec![Observable {
        name: "y".into(),
        terms: vec![(0, 1)],
        noise: Noise::Poisson {
            rho: Param::Theta(2),
        },
    }];
    let times = vec![0.5, 1.0, 2.0, 3.5, 5.0];
    let traj = simulate(
        &net,
        &theta,
        &initial,
        &obs,
        Some(&cov),
        0.0,
        &times,
        &[u64::MAX],
        u64::MAX,
        StreamKey::new(11, 0, 0, 0, 0, Purpose::Simulate),
    );
    let data = Data::from_columns(times.clone(), &["y".to_string()], traj.observations).unwrap();
    let make = |n: usize, kernel: KernelChoice| {
        let observations = Observations::new(obs.clone(), data.clone(), names.clone(), 1).unwrap();
        let mut cfg = FilterConfig::new(n, 1);
        cfg.kernel = kernel;
        FilterProblem::from_observations(
            net.clone(),
            observations,
            initial.clone(),
            0.0,
            cfg,
            Some(cov.clone()),
        )
        .unwrap()
    };
    let w = poisson(0.7);
    // The exact likelihood with the switch at `switch`.
    let exact_at = |switch: f64| -> f64 {
        let p0 = Poisson::new(15.0).unwrap();
        let mut alpha: Vec<f64> = (0..=K).map(|x| p0.pmf(x as u64)).collect();
        let (mut t, mut ll) = (0.0, 0.0);
        for (i, &ti) in times.iter().enumerate() {
            let mut cuts = vec![t];
            if switch > t && switch < ti {
                cuts.push(switch);
            }
            cuts.push(ti);
            for seg in cuts.windows(2) {
                let c = if seg[0] < switch { 1.0 } else { 0.3 };
                let m = common::transition(10.0 * c, 0.5, seg[1] - seg[0], K);
                let mut next = vec![0.0; K + 1];
                for x in 0..=K {
                    for x2 in 0..=K {
                        next[x2] += alpha[x] * m[x * (K + 1) + x2];
                    }
                }
                alpha = next;
            }
            let y = data.row(i)[0];
            for (x, a) in alpha.iter_mut().enumerate() {
                *a *= w(y, x as u64).exp();
            }
            let z: f64 = alpha.iter().sum();
            ll += z.ln();
            alpha.iter_mut().for_each(|a| *a /= z);
            t = ti;
        }
        ll
    };
    let p = make(40, KernelChoice::Simd);
    let right = exact_at(2.2);
    let wrong = exact_at(3.5);
    let (mean, se) = ratio(&p, &theta, right);
    let (wmean, wse) = ratio(&p, &theta, wrong);
    let key = FilterKey {
        seed: 9,
        chain: 0,
        iteration: 0,
    };
    let one = serial()
        .log_likelihood(&make(20_000, KernelChoice::Simd), &theta, key)
        .unwrap()
        .loglik;
    eprintln!(
        "covariate: ℓ = {right:.4}; mean ratio {mean:.4} ± {se:.4}; 20 000 particles {one:.4}; \
         wrong ℓ = {wrong:.4} gives {wmean:.4} ± {wse:.4}"
    );
    assert!((mean - 1.0).abs() < 4.0 * se && se < 0.2, "{mean} ± {se}");
    assert!((one - right).abs() < 0.05, "{one} vs {right}");
    assert!((wmean - 1.0).abs() > 4.0 * wse, "{wmean} ± {wse}");
    // The same bytes on every kernel.
    let bits: Vec<u64> = [
        KernelChoice::Scalar,
        KernelChoice::Batch,
        KernelChoice::Simd,
    ]
    .into_iter()
    .map(|k| {
        serial()
            .log_likelihood(&make(64, k), &theta, key)
            .unwrap()
            .loglik
            .to_bits()
    })
    .collect();
    assert!(bits.iter().all(|b| *b == bits[0]), "{bits:?}");
}

/// An inferred observation parameter: PMMH over a binomial reporting
/// probability ρ (λ and μ fixed at their true values, a uniform prior on
/// [0.05, 1]) against the exact posterior of ln ρ on a grid (the exact
/// likelihood written with statrs' binomial). Means and sds agree within
/// 4 Monte Carlo standard errors from the ESS.
#[test]
fn pmmh_over_a_reporting_probability_matches_the_exact_posterior() {
    let case = Case {
        name: "binomial",
        theta: vec![10.0, 0.5, 0.5],
        names: vec!["rho"],
        terms: vec![(0, 1)],
        noise: Noise::Binomial {
            rho: Param::Theta(2),
        },
        right: binomial(0.5),
        wrong: binomial(0.5),
        missing: vec![],
        initial: InitialCount::Poisson(15.0),
    };
    let p = problem(&case, 100);
    let prior = Prior::Uniform {
        lower: 0.05,
        upper: 1.0,
    };
    // Grid over ln ρ: density prior(ρ)·ρ·L(ρ).
    let g = 400;
    let (lo, hi) = (0.05f64.ln(), 0.0f64);
    let xs: Vec<f64> = (0..g)
        .map(|i| lo + (hi - lo) * (i as f64 + 0.5) / g as f64)
        .collect();
    let lp: Vec<f64> = xs
        .iter()
        .map(|&x| {
            let rho = x.exp();
            let d = binomial(rho);
            prior.log_density(rho) + x + exact(&p, &[10.0, 0.5, rho], &d, false)
        })
        .collect();
    let m = lp.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let w: Vec<f64> = lp.iter().map(|v| (v - m).exp()).collect();
    let z: f64 = w.iter().sum();
    let mean = xs.iter().zip(&w).map(|(x, w)| x * w).sum::<f64>() / z;
    let sd = (xs
        .iter()
        .zip(&w)
        .map(|(x, w)| (x - mean).powi(2) * w)
        .sum::<f64>()
        / z)
        .sqrt();
    assert!(
        w[0] / z < 1e-6 && w[g - 1] / z < 1e-3,
        "the grid must hold the posterior"
    );
    let chains = 4;
    let pmmh = Pmmh::new(
        p,
        vec![
            Prior::Fixed { value: 10.0 },
            Prior::Fixed { value: 0.5 },
            prior,
        ],
        PmmhConfig {
            seed: 8,
            chains,
            burn_in: 300,
            iterations: 4000,
            thin: 1,
            init: vec![10.0, 0.5, mean.exp()],
            start: StartPoints::Dispersed { sd: 0.2 },
            proposal: ProposalCovariance::Diagonal(vec![2.4 * sd]),
            early_rejection: true,
            checks: pcmc_core::tuning::ChainChecks::off(),
            adapt: None,
        },
    )
    .unwrap();
    let mut draws = vec![Vec::new(); chains];
    pmmh.run(&mut serial(), |rec, _| {
        if rec.kept {
            draws[rec.chain as usize].push(rec.theta[2].ln());
        }
        Ok(())
    })
    .unwrap();
    common::assert_posterior("ln ρ", &draws, mean, sd, 500.0);
}

/// Two data sets sharing θ (their own initial laws and times): the
/// log-likelihood is the sum of the two exact ones. The near miss starts
/// the second set from the first set's initial law.
#[test]
fn two_data_sets_match_the_sum_of_their_exact_likelihoods() {
    use pcmc_core::filter::DataSet;
    let first = Case {
        name: "set 1",
        theta: vec![10.0, 0.5, 0.6],
        names: vec!["rho"],
        terms: vec![(0, 1)],
        noise: Noise::Poisson {
            rho: Param::Theta(2),
        },
        right: poisson(0.6),
        wrong: poisson(0.6),
        missing: vec![],
        initial: InitialCount::Poisson(15.0),
    };
    let second = Case {
        initial: InitialCount::Fixed(40),
        missing: vec![3],
        ..first_clone(&first)
    };
    let (p1, p2) = (problem(&first, 40), problem(&second, 40));
    let theta = &first.theta;
    let right = exact(&p1, theta, &first.right, false) + exact(&p2, theta, &first.right, false);
    let alt = FilterProblem::from_observations(
        Network::immigration_death(),
        p2.observations().clone(),
        p1.initial().clone(),
        0.0,
        FilterConfig::new(40, 1),
        None,
    )
    .unwrap();
    let wrong = exact(&p1, theta, &first.right, false) + exact(&alt, theta, &first.right, false);
    let make = |n: usize| {
        // The second set's times start again at 0.5: each set keeps its own
        // clock.
        let data = Data::concat(vec![p1.data().clone(), p2.data().clone()]).unwrap();
        let obs = Observations::new(
            p1.observations().observables().to_vec(),
            data,
            p1.parameters().to_vec(),
            1,
        )
        .unwrap();
        FilterProblem::from_sets(
            Network::immigration_death(),
            obs,
            vec![
                DataSet {
                    initial: p1.initial().clone(),
                    t0: 0.0,
                    covariates: None,
                },
                DataSet {
                    initial: p2.initial().clone(),
                    t0: 0.0,
                    covariates: None,
                },
            ],
            FilterConfig::new(n, 1),
        )
        .unwrap()
    };
    let both = make(40);
    assert_eq!(both.data().n_sets(), 2);
    let (mean, se) = ratio(&both, theta, right);
    let (wmean, wse) = ratio(&both, theta, wrong);
    let one = serial()
        .log_likelihood(
            &make(20_000),
            theta,
            FilterKey {
                seed: 9,
                chain: 0,
                iteration: 0,
            },
        )
        .unwrap()
        .loglik;
    eprintln!(
        "two data sets: ℓ = {right:.4}; mean ratio {mean:.4} ± {se:.4}; 20 000 particles {one:.4}; \
         wrong ℓ = {wrong:.4} gives {wmean:.4} ± {wse:.4}"
    );
    assert!((mean - 1.0).abs() < 4.0 * se && se < 0.2, "{mean} ± {se}");
    assert!((one - right).abs() < 0.05, "{one} vs {right}");
    assert!((wmean - 1.0).abs() > 4.0 * wse, "{wmean} ± {wse}");
}

fn first_clone(c: &Case) -> Case {
    Case {
        name: c.name,
        theta: c.theta.clone(),
        names: c.names.clone(),
        terms: c.terms.clone(),
        noise: c.noise,
        right: poisson(0.6),
        wrong: poisson(0.6),
        missing: c.missing.clone(),
        initial: c.initial,
    }
}
