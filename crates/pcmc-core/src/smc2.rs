//! SMC² (Chopin, Jacob & Papaspiliopoulos, 2013, "SMC²: an efficient
//! algorithm for sequential analysis of state space models", JRSS B 75(3)):
//! `Nθ` θ-particles, each carrying its own bootstrap particle filter of `Nx`
//! exact-SSA particles, moved through the data one observation at a time.
//!
//! # One run
//! 1. Draw `θ_m ~ p(θ)`, `m = 0..Nθ` (stream `(seed, m, NS, 0, 0, Start)`,
//!    one draw per free parameter), log-weights `ω_m = 0`, `log Ẑ = 0`.
//! 2. For each observation `t = 1..K`:
//!    - every θ-particle's filter processes observation `t`, giving the
//!      increment `Δ_m = ℓ̂_m(1:t) − ℓ̂_m(1:t−1)`;
//!    - the evidence increment is `log Σ_m W_m e^{Δ_m}` with `W` the
//!      normalised weights *before* this observation, and `log Ẑ` adds it;
//!      then `ω_m += Δ_m`;
//!    - if the θ-ESS `(Σ w)² / Σ w²` falls below `ess_threshold · Nθ`, the
//!      θ-particles are resampled (systematic, exact integer weights as in the
//!      filter, stream `(seed, 0, NS, t, 0, Resample)`) and each is moved by
//!      `moves` PMMH steps targeting `p(θ | y_{1:t})`: a Gaussian random walk
//!      on log θ with covariance `2.38²/d ·` the weighted covariance of the
//!      cloud before resampling, a fresh filter over `y_{1:t}` for the
//!      proposal, and the usual acceptance ratio (likelihood estimates, prior,
//!      Jacobian of the log transform). The weights are reset to 0.
//! 3. The output is the weighted cloud `(θ_m, ω_m, ℓ̂_m)` and `log Ẑ`, an
//!    unbiased estimate of the evidence `p(y_{1:K})` on the natural scale
//!    (Chopin et al. 2013, Proposition 1; the filters' estimates are
//!    unbiased and the θ-particle system is a standard SMC sampler on the
//!    extended space).
//!
//! # Filters as keyed histories
//! A θ-particle's filter is not stored: it is a [`Lineage`], the list of
//! filter keys its draws came from, and is recomputed over `y_{1:t}` when
//! needed ([`crate::filter::run_filter_scheduled`]). Because every draw of a
//! pass is keyed by its observation step and particle index, the recomputed
//! pass repeats the earlier one bit for bit and adds observation `t`: the
//! result is exactly that of a filter kept in memory, whatever order or
//! place θ-particles are evaluated in. After a θ-resampling every θ-particle
//! continues with a key of its own slot (its copies share the history up to
//! `t` and nothing after, as copies of a stored filter would); a move that is
//! accepted starts a new lineage. Recomputation costs `O(t)` filter steps per
//! observation instead of `O(1)`; the payoff is that a θ-particle is small
//! (θ and a few keys) and can move between workers freely.
//!
//! Every key of an SMC² run sets bit 62 of the iteration field ([`NS`]),
//! which PMMH never does, so the streams are distinct from PMMH's.

use crate::error::{Error, Result};
use crate::filter::{
    FilterKey, FilterProblem, KeySchedule, SerialRunner, Workspace, run_filter_scheduled,
};
use crate::prior::Prior;
use crate::resample::{Resampling, offspring_all, quantise};
use crate::rng::{Purpose, StreamKey};
use rand::RngExt;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

/// The iteration-field namespace of SMC² keys (bit 62).
pub const NS: u64 = 1 << 62;

/// The most PMMH moves per rejuvenation (they are numbered in 8 bits of the
/// key).
pub const MAX_MOVES: u32 = 255;

/// SMC² settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Smc2Config {
    /// Run seed.
    pub seed: u64,
    /// Number of θ-particles `Nθ`.
    pub theta_particles: usize,
    /// Resample-move when the θ-ESS falls below this fraction of `Nθ`.
    pub ess_threshold: f64,
    /// PMMH moves per rejuvenation.
    pub moves: u32,
}

/// One segment of a θ-particle's filter history: from observation step
/// `from` on (the resampling after observation `from − 1` and the
/// propagation to `from`), the filter draws from `key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// First step this key serves.
    pub from: u32,
    /// The key.
    pub key: FilterKey,
}

/// A θ-particle's filter history: segments in increasing `from`, the first
/// from 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lineage(pub Vec<Segment>);

impl KeySchedule for Lineage {
    fn key_for(&self, step: usize) -> FilterKey {
        self.0
            .iter()
            .rev()
            .find(|s| s.from as usize <= step)
            .map_or(self.0[0].key, |s| s.key)
    }
}

/// One θ-particle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThetaParticle {
    /// θ (all parameters, fixed ones at their value).
    pub theta: Vec<f64>,
    /// Log prior density.
    pub log_prior: f64,
    /// `ℓ̂(y_{1:t})` of its filter.
    pub loglik: f64,
    /// Log-weight (unnormalised; reset to 0 at each resampling).
    pub log_weight: f64,
    /// Its filter's history.
    pub lineage: Lineage,
}

/// One filter pass an SMC² step needs: θ, its history and how many
/// observations to process.
#[derive(Debug, Clone, PartialEq)]
pub struct PassRequest<'a> {
    /// θ.
    pub theta: &'a [f64],
    /// The keys of its draws.
    pub lineage: &'a Lineage,
    /// Observations `y_{1:t}` to process.
    pub observations: usize,
}

/// Runs batches of independent filter passes: the seam SMC²'s executors
/// implement (θ-particles across threads, ranks or partitions). Each result
/// must be [`crate::filter::run_filter_scheduled`]'s log-likelihood for the
/// request, bit for bit, whatever runs it.
pub trait PassBatch {
    /// The log-likelihood estimate of each request, in order.
    ///
    /// # Errors
    /// Executor failures.
    fn log_likelihoods(
        &mut self,
        problem: &FilterProblem,
        requests: &[PassRequest<'_>],
    ) -> Result<Vec<f64>>;
}

/// Runs every pass in order on this thread.
#[derive(Debug, Default)]
pub struct SerialPasses {
    ws: Workspace,
}

/// One request's pass on this thread: what every [`PassBatch`] must return.
pub fn pass_log_likelihood(
    problem: &FilterProblem,
    r: &PassRequest<'_>,
    ws: &mut Workspace,
) -> f64 {
    run_filter_scheduled(
        &SerialRunner,
        problem,
        r.theta,
        r.lineage,
        r.observations,
        ws,
    )
    .loglik
}

impl PassBatch for SerialPasses {
    fn log_likelihoods(
        &mut self,
        problem: &FilterProblem,
        requests: &[PassRequest<'_>],
    ) -> Result<Vec<f64>> {
        Ok(requests
            .iter()
            .map(|r| pass_log_likelihood(problem, r, &mut self.ws))
            .collect())
    }
}

/// What happened at one observation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Observations processed (1-based).
    pub t: usize,
    /// θ-ESS after reweighting, before any resampling.
    pub ess: f64,
    /// `log p̂(y_t | y_{1:t−1})`.
    pub log_evidence_increment: f64,
    /// `log p̂(y_{1:t})`.
    pub log_evidence: f64,
    /// Whether the θ-particles were resampled and moved.
    pub resampled: bool,
    /// Accepted moves over moves tried (0 without a move).
    pub acceptance: f64,
}

/// The result of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Smc2Output {
    /// The final weighted θ-particles.
    pub particles: Vec<ThetaParticle>,
    /// `log p̂(y_{1:K})`.
    pub log_evidence: f64,
    /// One record per observation.
    pub steps: Vec<StepRecord>,
}

impl Smc2Output {
    /// Normalised weights of the final cloud.
    pub fn weights(&self) -> Vec<f64> {
        normalised(&self.particles)
    }

    /// Weighted mean and sd of parameter `p`.
    pub fn mean_sd(&self, p: usize) -> (f64, f64) {
        let w = self.weights();
        let m: f64 = w
            .iter()
            .zip(&self.particles)
            .map(|(w, q)| w * q.theta[p])
            .sum();
        let v: f64 = w
            .iter()
            .zip(&self.particles)
            .map(|(w, q)| w * (q.theta[p] - m).powi(2))
            .sum();
        (m, v.sqrt())
    }
}

fn normalised(ps: &[ThetaParticle]) -> Vec<f64> {
    let max = ps
        .iter()
        .map(|p| p.log_weight)
        .fold(f64::NEG_INFINITY, f64::max);
    let w: Vec<f64> = ps.iter().map(|p| (p.log_weight - max).exp()).collect();
    let s: f64 = w.iter().sum();
    w.into_iter().map(|x| x / s).collect()
}

/// The SMC² sampler.
#[derive(Debug, Clone)]
pub struct Smc2 {
    problem: FilterProblem,
    priors: Vec<Prior>,
    free: Vec<usize>,
    config: Smc2Config,
}

impl Smc2 {
    /// Validates and assembles a sampler.
    ///
    /// # Errors
    /// [`Error::Setting`] for a prior list of the wrong length, an invalid
    /// prior, no free parameter, fewer than 2 θ-particles, a threshold outside (0, 1] or a
    /// move count outside 1..=[`MAX_MOVES`].
    pub fn new(problem: FilterProblem, priors: Vec<Prior>, config: Smc2Config) -> Result<Self> {
        let free = crate::prior::free_parameters(problem.network().parameters(), &priors)?;
        if config.theta_particles < 2 {
            return Err(Error::setting("smc2.theta_particles", "must be at least 2"));
        }
        if !(config.ess_threshold > 0.0 && config.ess_threshold <= 1.0) {
            return Err(Error::setting(
                "smc2.ess_threshold",
                format!("{} is not in (0, 1]", config.ess_threshold),
            ));
        }
        if config.moves == 0 || config.moves > MAX_MOVES {
            return Err(Error::setting(
                "smc2.moves",
                format!("{} is not in 1..={MAX_MOVES}", config.moves),
            ));
        }
        Ok(Smc2 {
            problem,
            priors,
            free,
            config,
        })
    }

    fn log_prior(&self, theta: &[f64]) -> f64 {
        theta
            .iter()
            .zip(&self.priors)
            .map(|(x, p)| p.log_density(*x))
            .sum()
    }

    /// The filter key of slot `m` for `generation` (0: the initial filter;
    /// `t << 8`: the slot's continuation after the resampling at `t`;
    /// `t << 8 | j + 1`: move `j` at `t`).
    fn key(&self, m: usize, generation: u64) -> FilterKey {
        FilterKey {
            seed: self.config.seed,
            chain: m as u64,
            iteration: NS | generation,
        }
    }

    fn stream(&self, m: usize, step: u64, purpose: Purpose) -> StreamKey {
        StreamKey::new(self.config.seed, m as u64, NS, step, 0, purpose)
    }

    /// θ-particle `m`'s draw from the prior (fixed parameters at their value).
    fn prior_draw(&self, m: usize) -> Vec<f64> {
        let mut rng = self.stream(m, 0, Purpose::Start).rng();
        self.priors.iter().map(|p| p.sample(&mut rng)).collect()
    }

    /// Runs SMC² over all observations.
    ///
    /// # Errors
    /// Executor failures.
    pub fn run<B: PassBatch + ?Sized>(&self, exec: &mut B) -> Result<Smc2Output> {
        let n = self.config.theta_particles;
        let k = self.problem.data().len();
        let mut ps: Vec<ThetaParticle> = (0..n)
            .map(|m| {
                let theta = self.prior_draw(m);
                ThetaParticle {
                    log_prior: self.log_prior(&theta),
                    theta,
                    loglik: 0.0,
                    log_weight: 0.0,
                    lineage: Lineage(vec![Segment {
                        from: 0,
                        key: self.key(m, 0),
                    }]),
                }
            })
            .collect();
        let mut log_z = 0.0;
        let mut steps = Vec::with_capacity(k);
        for t in 1..=k {
            let requests: Vec<PassRequest<'_>> = ps
                .iter()
                .map(|p| PassRequest {
                    theta: &p.theta,
                    lineage: &p.lineage,
                    observations: t,
                })
                .collect();
            let ll = exec.log_likelihoods(&self.problem, &requests)?;
            drop(requests);
            // Evidence increment with the weights before this observation.
            let w = normalised(&ps);
            // A filter that collapsed stays at −∞ (its weight is already 0).
            let inc: Vec<f64> = ps
                .iter()
                .zip(&ll)
                .map(|(p, l)| {
                    if *l == f64::NEG_INFINITY || p.loglik == f64::NEG_INFINITY {
                        f64::NEG_INFINITY
                    } else {
                        l - p.loglik
                    }
                })
                .collect();
            let log_inc = log_sum_weighted(&w, &inc);
            log_z += log_inc;
            for (p, (l, d)) in ps.iter_mut().zip(ll.iter().zip(&inc)) {
                p.loglik = *l;
                p.log_weight += d;
            }
            let ess = theta_ess(&ps);
            let mut record = StepRecord {
                t,
                ess,
                log_evidence_increment: log_inc,
                log_evidence: log_z,
                resampled: false,
                acceptance: 0.0,
            };
            if !log_z.is_finite() {
                return Err(Error::setting(
                    "smc2",
                    format!("every θ-particle has likelihood 0 at observation {t}"),
                ));
            }
            if ess < self.config.ess_threshold * n as f64 {
                let chol = self.proposal_chol(&ps);
                ps = self.resample(&ps, t);
                record.resampled = true;
                record.acceptance = self.rejuvenate(exec, &mut ps, &chol, t)?;
            }
            steps.push(record);
        }
        Ok(Smc2Output {
            particles: ps,
            log_evidence: log_z,
            steps,
        })
    }

    /// Cholesky factor of `2.38²/d ·` the weighted covariance of log θ
    /// (free parameters), with a small ridge.
    fn proposal_chol(&self, ps: &[ThetaParticle]) -> Vec<f64> {
        let d = self.free.len();
        let w = normalised(ps);
        let logs: Vec<Vec<f64>> = ps
            .iter()
            .map(|p| self.free.iter().map(|&i| p.theta[i].ln()).collect())
            .collect();
        let mut mean = vec![0.0; d];
        for (wi, x) in w.iter().zip(&logs) {
            for a in 0..d {
                mean[a] += wi * x[a];
            }
        }
        let mut cov = vec![0.0; d * d];
        for (wi, x) in w.iter().zip(&logs) {
            for a in 0..d {
                for b in 0..d {
                    cov[a * d + b] += wi * (x[a] - mean[a]) * (x[b] - mean[b]);
                }
            }
        }
        let s = 2.38 * 2.38 / d as f64;
        for a in 0..d {
            for b in 0..d {
                cov[a * d + b] = s * (cov[a * d + b] + if a == b { 1e-10 } else { 0.0 });
            }
        }
        crate::pmmh::cholesky(&cov, d).unwrap_or_else(|| {
            // A degenerate cloud: independent steps of the ridge's size.
            let mut l = vec![0.0; d * d];
            for a in 0..d {
                l[a * d + a] = (s * 1e-4).sqrt();
            }
            l
        })
    }

    /// Systematic resampling of the θ-particles after observation `t`; every
    /// copy continues its filter with a key of its own slot.
    fn resample(&self, ps: &[ThetaParticle], t: usize) -> Vec<ThetaParticle> {
        let n = ps.len();
        let max = ps
            .iter()
            .map(|p| p.log_weight)
            .fold(f64::NEG_INFINITY, f64::max);
        let q: Vec<u64> = ps.iter().map(|p| quantise(p.log_weight, max)).collect();
        let total: u128 = q.iter().map(|x| u128::from(*x)).sum();
        let mut counts = vec![0u64; n];
        offspring_all(
            Resampling::Systematic,
            &q,
            total,
            n as u64,
            self.stream(0, t as u64, Purpose::Resample),
            &mut counts,
        );
        let mut out = Vec::with_capacity(n);
        for (p, c) in ps.iter().zip(&counts) {
            for _ in 0..*c {
                let m = out.len();
                let mut q = p.clone();
                q.log_weight = 0.0;
                q.lineage.0.push(Segment {
                    from: t as u32,
                    key: self.key(m, (t as u64) << 8),
                });
                out.push(q);
            }
        }
        out
    }

    /// `moves` PMMH steps for every θ-particle on `y_{1:t}`; returns the
    /// acceptance rate.
    fn rejuvenate<B: PassBatch + ?Sized>(
        &self,
        exec: &mut B,
        ps: &mut [ThetaParticle],
        chol: &[f64],
        t: usize,
    ) -> Result<f64> {
        let d = self.free.len();
        let mut accepted = 0u64;
        let mut tried = 0u64;
        for j in 0..self.config.moves {
            let generation = ((t as u64) << 8) | u64::from(j + 1);
            // Proposals, their priors and Jacobians, and the accept uniforms.
            let mut props = Vec::with_capacity(ps.len());
            for (m, p) in ps.iter().enumerate() {
                let mut rng = self.stream(m, generation, Purpose::Proposal).rng();
                let z: Vec<f64> = (0..d).map(|_| rng.sample(StandardNormal)).collect();
                let mut theta = p.theta.clone();
                let mut log_jac = 0.0;
                for (a, &i) in self.free.iter().enumerate() {
                    let eps: f64 = (0..=a).map(|b| chol[a * d + b] * z[b]).sum();
                    theta[i] = (p.theta[i].ln() + eps).exp();
                    log_jac += eps;
                }
                let lp = self.log_prior(&theta);
                let log_u = crate::rng::uniform_open0(
                    &mut self.stream(m, generation, Purpose::Accept).rng(),
                )
                .ln();
                let lineage = Lineage(vec![Segment {
                    from: 0,
                    key: self.key(m, generation),
                }]);
                props.push((theta, lp, log_jac, log_u, lineage));
            }
            // Filters only for proposals inside the prior's support.
            let inside: Vec<usize> = (0..ps.len())
                .filter(|&m| props[m].1 > f64::NEG_INFINITY && !props[m].1.is_nan())
                .collect();
            let requests: Vec<PassRequest<'_>> = inside
                .iter()
                .map(|&m| PassRequest {
                    theta: &props[m].0,
                    lineage: &props[m].4,
                    observations: t,
                })
                .collect();
            let ll = exec.log_likelihoods(&self.problem, &requests)?;
            drop(requests);
            tried += ps.len() as u64;
            for (&m, l) in inside.iter().zip(ll) {
                let (theta, lp, log_jac, log_u, lineage) = &props[m];
                let p = &mut ps[m];
                let log_alpha = l - p.loglik + lp - p.log_prior + log_jac;
                let accept =
                    l > f64::NEG_INFINITY && (p.loglik == f64::NEG_INFINITY || *log_u < log_alpha);
                if accept {
                    p.theta.clone_from(theta);
                    p.log_prior = *lp;
                    p.loglik = l;
                    p.lineage = lineage.clone();
                    accepted += 1;
                }
            }
        }
        Ok(accepted as f64 / tried.max(1) as f64)
    }
}

/// `log Σ w_i e^{x_i}` for normalised weights `w`, stably.
fn log_sum_weighted(w: &[f64], x: &[f64]) -> f64 {
    let max = w
        .iter()
        .zip(x)
        .filter(|(w, _)| **w > 0.0)
        .map(|(_, x)| *x)
        .fold(f64::NEG_INFINITY, f64::max);
    if max == f64::NEG_INFINITY {
        return f64::NEG_INFINITY;
    }
    let s: f64 = w
        .iter()
        .zip(x)
        .filter(|(w, _)| **w > 0.0)
        .map(|(w, x)| w * (x - max).exp())
        .sum();
    max + s.ln()
}

/// `(Σ w)² / Σ w²` of the θ-weights.
fn theta_ess(ps: &[ThetaParticle]) -> f64 {
    let w = normalised(ps);
    1.0 / w.iter().map(|x| x * x).sum::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::run_filter;

    /// A pass over the first `t` observations repeats the full pass's first
    /// `t` steps bit for bit, and a lineage segment from step `s` changes
    /// nothing before `s` and everything from it on: what makes a recomputed
    /// filter the stored one.
    #[test]
    fn a_lineage_changes_only_the_steps_from_its_segment_on() {
        let problem = crate::workloads::lv11(30, 1);
        let theta = [1.0, 0.005, 0.6];
        let key = |c: u64| FilterKey {
            seed: 3,
            chain: c,
            iteration: NS,
        };
        let k = problem.data().len();
        let full = run_filter(
            &SerialRunner,
            &problem,
            &theta,
            key(0),
            &mut Workspace::default(),
        );
        let pass = |l: &Lineage, t: usize| {
            run_filter_scheduled(
                &SerialRunner,
                &problem,
                &theta,
                l,
                t,
                &mut Workspace::default(),
            )
        };
        let parent = Lineage(vec![Segment {
            from: 0,
            key: key(0),
        }]);
        let whole = pass(&parent, k);
        assert_eq!(whole.loglik.to_bits(), full.loglik.to_bits());
        assert_eq!(whole.ess, full.ess);
        for t in 1..k {
            let p = pass(&parent, t);
            assert_eq!(p.ess[..], full.ess[..t], "prefix {t}");
            assert!(p.loglik.is_finite() && p.loglik > full.loglik, "prefix {t}");
        }
        let s = 5;
        let child = Lineage(vec![
            Segment {
                from: 0,
                key: key(0),
            },
            Segment {
                from: s as u32,
                key: key(1),
            },
        ]);
        for t in 1..=k {
            let same = pass(&child, t).loglik.to_bits() == pass(&parent, t).loglik.to_bits();
            assert_eq!(same, t <= s, "{t} observations");
        }
    }

    #[test]
    fn settings_are_checked() {
        let problem = crate::workloads::lv11(10, 1);
        let priors = crate::workloads::log_uniform_priors(&[1.0, 0.005, 0.6], 2.0);
        let ok = Smc2Config {
            seed: 1,
            theta_particles: 10,
            ess_threshold: 0.5,
            moves: 1,
        };
        assert!(Smc2::new(problem.clone(), priors.clone(), ok.clone()).is_ok());
        for (bad, field) in [
            (
                Smc2Config {
                    theta_particles: 1,
                    ..ok.clone()
                },
                "theta_particles",
            ),
            (
                Smc2Config {
                    ess_threshold: 0.0,
                    ..ok.clone()
                },
                "ess_threshold",
            ),
            (
                Smc2Config {
                    ess_threshold: f64::NAN,
                    ..ok.clone()
                },
                "ess_threshold",
            ),
            (
                Smc2Config {
                    moves: 0,
                    ..ok.clone()
                },
                "moves",
            ),
            (
                Smc2Config {
                    moves: 256,
                    ..ok.clone()
                },
                "moves",
            ),
        ] {
            let e = Smc2::new(problem.clone(), priors.clone(), bad).unwrap_err();
            assert!(e.to_string().contains(field), "{e}");
        }
    }
}
