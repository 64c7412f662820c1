//! Model choice with a known answer: immigration–death data compared under
//! three one-species models whose exact evidences are computable —
//! immigration–death (λ, μ), pure death (μ) and linear birth–death (β, μ).
//!
//! Each model's exact likelihood comes from the forward algorithm with
//! transition probabilities by uniformisation on `0..=K` (all three are
//! birth–death chains: birth rate `λ + βx`, death rate `μx`); the exact
//! evidence is the quadrature of likelihood × prior on a grid of log-rates.
//! SMC²'s log Bayes factors, with their Lee–Whiteley standard errors, must
//! agree with the exact ones, and `compare_models` must rank the models as
//! the exact evidences do.

mod common;

use pcmc_core::prelude::*;
use pcmc_core::smc2::{ModelEvidence, SerialPasses, Smc2, Smc2Config, compare_models};

/// Truncation of the state space (the data stay below 40; checked).
const K: usize = 70;

/// One model: its network, the free parameters' roles and priors.
struct Model {
    name: &'static str,
    net: Network,
    /// For each parameter in the network's order: 0 immigration λ, 1 birth
    /// β, 2 death μ.
    roles: Vec<usize>,
    priors: Vec<Prior>,
}

fn reaction(name: &str, from: u32, to: u32, rate: &str) -> ReactionSpec {
    let term = |n: u32| {
        (n > 0)
            .then(|| Term {
                species: "X".into(),
                count: n,
            })
            .into_iter()
            .collect()
    };
    ReactionSpec {
        name: name.into(),
        reactants: term(from),
        products: term(to),
        rate: rate.into(),
    }
}

fn models() -> Vec<Model> {
    let ln = |m: f64, s: f64| Prior::LogNormal {
        mu: m.ln(),
        sigma: s,
    };
    let net = |params: &[&str], rs: &[ReactionSpec]| {
        Network::new(
            vec!["X".into()],
            params.iter().map(|s| s.to_string()).collect(),
            rs,
        )
        .unwrap()
    };
    vec![
        Model {
            name: "immigration-death",
            net: Network::immigration_death(),
            roles: vec![0, 2],
            priors: common::id_priors(),
        },
        Model {
            name: "pure death",
            net: net(&["mu"], &[reaction("death", 1, 0, "mu")]),
            roles: vec![2],
            priors: vec![ln(0.05, 1.0)],
        },
        Model {
            name: "birth-death",
            net: net(
                &["beta", "mu"],
                &[
                    reaction("birth", 1, 2, "beta"),
                    reaction("death", 1, 0, "mu"),
                ],
            ),
            roles: vec![1, 2],
            priors: vec![ln(0.5, 0.5), ln(0.5, 0.5)],
        },
    ]
}

/// `model`'s filtering problem on `base`'s data, initial law and
/// observation model.
fn problem_for(model: &Model, base: &FilterProblem, particles: usize) -> FilterProblem {
    let data = base.data();
    let rows = (0..data.len()).map(|i| data.row(i).to_vec()).collect();
    let data = Data::new(&model.net, data.times().to_vec(), data.names(), rows).unwrap();
    let observations = Observations::new(
        base.observations().observables().to_vec(),
        data,
        model.net.parameters().to_vec(),
        1,
    )
    .unwrap();
    FilterProblem::from_observations(
        model.net.clone(),
        observations,
        InitialPrior::new(&model.net, base.initial().means().to_vec()).unwrap(),
        base.t0(),
        FilterConfig::new(particles, 1),
        None,
    )
    .unwrap()
}

/// `p ← p·exp(Q dt)` for the birth–death chain on `0..=K` by uniformisation,
/// in sub-steps with `q·h ≤ 20` so the Poisson weights stay representable.
fn propagate(p: &mut Vec<f64>, rates: [f64; 3], dt: f64) {
    let birth = |x: usize| {
        if x < K {
            rates[0] + rates[1] * x as f64
        } else {
            0.0
        }
    };
    let death = |x: usize| rates[2] * x as f64;
    let q = (0..=K)
        .map(|x| birth(x) + death(x))
        .fold(0.0, f64::max)
        .max(1e-12);
    let subs = (q * dt / 20.0).ceil().max(1.0) as usize;
    let h = dt / subs as f64;
    let qh = q * h;
    for _ in 0..subs {
        let mut term = p.clone();
        let mut weight = (-qh).exp();
        let mut out: Vec<f64> = term.iter().map(|v| v * weight).collect();
        let mut n = 0;
        // Terms past the Poisson mode until the weights fall below 1e-18
        // (the tail beyond is smaller still).
        while (n as f64) < qh || weight > 1e-18 {
            n += 1;
            // term ← term · P with P = I + Q/q.
            let mut next = vec![0.0; K + 1];
            for x in 0..=K {
                let v = term[x];
                if v == 0.0 {
                    continue;
                }
                let (b, d) = (birth(x) / q, death(x) / q);
                next[x] += v * (1.0 - b - d);
                if x < K {
                    next[x + 1] += v * b;
                }
                if x > 0 {
                    next[x - 1] += v * d;
                }
            }
            term = next;
            weight *= qh / n as f64;
            for (o, t) in out.iter_mut().zip(&term) {
                *o += weight * t;
            }
        }
        *p = out;
    }
}

/// The exact log-likelihood of `problem`'s data under rates `[λ, β, μ]`.
fn exact_loglik(problem: &FilterProblem, rates: [f64; 3]) -> f64 {
    common::forward_loglik(problem, &rates, K, |p, dt| propagate(p, rates, dt))
}

/// The exact log evidence of `model` by the rectangle rule on a grid of its
/// log-rates (prior centre ± 5 prior sd, 7 in one dimension), with a check that the posterior
/// mass on the grid's border is negligible.
fn exact_log_evidence(model: &Model, problem: &FilterProblem) -> f64 {
    let d = model.priors.len();
    // The rectangle rule on a smooth density is accurate to
    // ~exp(−2π²σ²/h²) for posterior sd σ and step h: with h ≤ 0.7σ here
    // (σ ≈ 0.35 and more), far below Monte Carlo error.
    let g: usize = if d == 1 { 801 } else { 51 };
    // ± 7 prior sd in one dimension: pure death's posterior leans on the
    // prior's lower tail (the data do not decline).
    let half = if d == 1 { 7.0 } else { 5.0 };
    let axes: Vec<Vec<f64>> = model
        .priors
        .iter()
        .map(|p| {
            let Prior::LogNormal { mu, sigma } = *p else {
                unreachable!()
            };
            (0..g)
                .map(|i| mu - half * sigma + 2.0 * half * sigma * i as f64 / (g - 1) as f64)
                .collect()
        })
        .collect();
    let steps: f64 = axes.iter().map(|a| a[1] - a[0]).product();
    let n = g.pow(d as u32);
    let mut lp = Vec::with_capacity(n);
    for idx in 0..n {
        let mut rates = [0.0; 3];
        let mut v = 0.0;
        let mut rest = idx;
        for a in (0..d).rev() {
            let l = axes[a][rest % g];
            rest /= g;
            let theta = l.exp();
            rates[model.roles[a]] = theta;
            // Density of the log-rate: prior density × Jacobian θ.
            v += model.priors[a].log_density(theta) + l;
        }
        lp.push(v + exact_loglik(problem, rates));
    }
    let max = lp.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let w: Vec<f64> = lp.iter().map(|v| (v - max).exp()).collect();
    let z: f64 = w.iter().sum();
    let edge: f64 = (0..n)
        .filter(|&idx| {
            let mut rest = idx;
            (0..d).any(|_| {
                let i = rest % g;
                rest /= g;
                i == 0 || i == g - 1
            })
        })
        .map(|idx| w[idx] / z)
        .sum();
    assert!(
        edge < 1e-6,
        "{}: {edge:e} of the mass on the grid's edge",
        model.name
    );
    max + (z * steps).ln()
}

/// Model `i`'s exact log evidence and an SMC² run on the same data.
fn one_model(i: usize, m: &Model, base: &FilterProblem) -> (f64, pcmc_core::smc2::Smc2Output) {
    let problem = problem_for(m, base, 50);
    let log_z = exact_log_evidence(m, &problem);
    let out = Smc2::new(
        problem,
        m.priors.clone(),
        Smc2Config {
            seed: 40 + i as u64,
            theta_particles: 1000,
            moves: 2,
            ..Smc2Config::default()
        },
    )
    .unwrap()
    .run(&mut SerialPasses::default())
    .unwrap();
    (log_z, out)
}

#[test]
fn smc2_log_bayes_factors_match_the_exact_ones() {
    let times: Vec<f64> = (1..=20).map(|i| 0.5 * f64::from(i)).collect();
    let obs = ObservationModel::Gaussian { sd: vec![2.0] };
    let base = common::id_problem(&[5.0, 0.5], times, obs, 50, 3);
    let top = (0..base.data().len())
        .map(|i| base.data().row(i)[0])
        .fold(0.0, f64::max);
    assert!(
        top + 8.0 * 2.0 < K as f64,
        "K = {K} too small for data up to {top}"
    );
    // The immigration–death model's exact evidence from this truncation must
    // equal the closed-form one of `common` (a check of `propagate`).
    let ms = models();
    let check = [10.0, 0.0, 0.5];
    let (a, b) = (
        exact_loglik(&base, check),
        common::exact_loglik(&base, &[10.0, 0.5], 80),
    );
    assert!(
        (a - b).abs() < 1e-9,
        "uniformisation {a} vs closed form {b}"
    );
    // One thread per model (the exact grids dominate the time).
    let results: Vec<(f64, pcmc_core::smc2::Smc2Output)> = std::thread::scope(|scope| {
        let handles: Vec<_> = ms
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let base = &base;
                scope.spawn(move || one_model(i, m, base))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut exact = Vec::new();
    let mut est = Vec::new();
    for (m, (log_z, out)) in ms.iter().zip(results) {
        eprintln!(
            "{}: exact log Z {log_z:.4}; SMC² {:.4} ± {:.4} (Nx {}, {} resamplings)",
            m.name, out.log_evidence, out.log_evidence_se, out.nx, out.resamplings
        );
        exact.push(log_z);
        est.push(ModelEvidence {
            log_evidence: out.log_evidence,
            se: out.log_evidence_se,
            prior_weight: 1.0,
        });
    }
    let table = compare_models(&est);
    let truth = compare_models(
        &exact
            .iter()
            .map(|&l| ModelEvidence {
                log_evidence: l,
                se: 0.0,
                prior_weight: 1.0,
            })
            .collect::<Vec<_>>(),
    );
    let rank = |t: &[pcmc_core::smc2::ModelComparison]| {
        let mut r: Vec<usize> = (0..t.len()).collect();
        r.sort_by(|&a, &b| t[b].log_bayes_factor.total_cmp(&t[a].log_bayes_factor));
        r
    };
    assert_eq!(rank(&table), rank(&truth), "{table:?} against {truth:?}");
    for (i, (e, x)) in table.iter().zip(&truth).enumerate() {
        eprintln!(
            "{}: log BF {:.3} ± {:.3} (exact {:.3}), P {:.4} (exact {:.4})",
            ms[i].name,
            e.log_bayes_factor,
            e.log_bayes_factor_se,
            x.log_bayes_factor,
            e.probability,
            x.probability
        );
        assert!(
            (e.log_bayes_factor - x.log_bayes_factor).abs() <= 3.0 * e.log_bayes_factor_se + 1e-12,
            "{}: log BF {} ± {} against the exact {}",
            ms[i].name,
            e.log_bayes_factor,
            e.log_bayes_factor_se,
            x.log_bayes_factor
        );
    }
}
