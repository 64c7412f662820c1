//! `R` independent replicates of one SMC² run, combined.
//!
//! A single run's standard error of `log Ẑ` (Lee–Whiteley) cannot see its
//! own error when few effective Eves are left. Replicates can: replicate
//! `r` is the same job with [`super::Smc2Config::replicate`] `= r`, whose
//! keys share no random number with any other replicate's, so the `Ẑ_r`
//! are independent and unbiased, and
//!
//! - the evidence is their mean, `Ẑ = (1/R) Σ_r Ẑ_r` (unbiased), reported as
//!   `log Ẑ`;
//! - its relative variance is estimated from the replicates' spread,
//!   `V̂/Ẑ² = Σ_r (Ẑ_r/Ẑ − 1)² / (R (R − 1))`, and the standard error of
//!   `log Ẑ` is its root (delta method);
//! - the pooled posterior is every replicate's cloud with replicate `r`'s
//!   weights scaled by `Ẑ_r / Σ Ẑ` (each cloud is a weighted sample of the
//!   posterior whose normalising estimate is `Ẑ_r`: the pooled weights are
//!   those of one importance sampler on the union, Chopin & Papaspiliopoulos
//!   2020, §17).
//!
//! The delta method is bounded like Lee–Whiteley's: `V̂/Ẑ² ≤ 1` however
//! spread the `Ẑ_r` are. Its error is honest only while the replicates'
//! `log Ẑ_r` spread little (their sd, [`ReplicateEvidence::log_sd`], at
//! most [`MAX_LOG_SD`]) and there are at least [`MIN_REPLICATES`] of them;
//! otherwise [`ReplicateEvidence::se_reliable`] says no (both thresholds
//! from the calibration in `smc2_evidence.rs`).

use super::{Smc2Output, normalised};

/// Fewer replicates than this and the replicate standard error is not
/// reliable: with `R − 1` degrees of freedom in the variance estimate, ±2
/// of them covers the truth in under 90 % of runs below 8 (Student's t:
/// 0.91 at 7 degrees of freedom, 0.86 at 3).
pub const MIN_REPLICATES: usize = 8;

/// A larger sd of the replicates' `log Ẑ_r` than this (nats), and their
/// mean is carried by one or two of them: the delta method's error,
/// bounded by 1, is then too small.
pub const MAX_LOG_SD: f64 = 1.0;

/// The replicates' evidence, combined.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicateEvidence {
    /// `log` of the mean of the replicates' `Ẑ_r`.
    pub log_evidence: f64,
    /// The replicate-based standard error of `log Ẑ` (delta method); NaN
    /// for fewer than 2 replicates.
    pub log_evidence_se: f64,
    /// The sample sd of the replicates' `log Ẑ_r` (NaN for fewer than 2,
    /// infinite when a replicate's likelihood is 0).
    pub log_sd: f64,
    /// `(Σ Ẑ_r)² / Σ Ẑ_r²`: how many replicates the mean rests on.
    pub effective_replicates: f64,
    /// `Ẑ_r / Σ Ẑ`, the weight of replicate `r`'s cloud in the pooled
    /// posterior.
    pub weights: Vec<f64>,
}

impl ReplicateEvidence {
    /// Whether the replicate standard error can be trusted: at least
    /// [`MIN_REPLICATES`] replicates whose `log Ẑ_r` have an sd of at most
    /// [`MAX_LOG_SD`].
    pub fn se_reliable(&self) -> bool {
        self.weights.len() >= MIN_REPLICATES
            && self.log_sd.is_finite()
            && self.log_sd <= MAX_LOG_SD
            && self.log_evidence_se.is_finite()
    }
}

/// The replicates' evidences combined (see the module's text). Replicates
/// with `log Ẑ_r = −∞` count (their `Ẑ_r` is 0).
pub fn combine(log_z: &[f64]) -> ReplicateEvidence {
    let r = log_z.len();
    let rf = r as f64;
    let max = log_z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if r == 0 || max == f64::NEG_INFINITY {
        return ReplicateEvidence {
            log_evidence: f64::NEG_INFINITY,
            log_evidence_se: f64::NAN,
            log_sd: f64::NAN,
            effective_replicates: 0.0,
            weights: vec![0.0; r],
        };
    }
    let scaled: Vec<f64> = log_z.iter().map(|l| (l - max).exp()).collect();
    let sum: f64 = scaled.iter().sum();
    let weights: Vec<f64> = scaled.iter().map(|x| x / sum).collect();
    let (se, sd) = if r < 2 {
        (f64::NAN, f64::NAN)
    } else {
        let rel: f64 =
            weights.iter().map(|w| (rf * w - 1.0).powi(2)).sum::<f64>() / (rf * (rf - 1.0));
        let sd = if log_z.iter().all(|l| l.is_finite()) {
            let mean = log_z.iter().sum::<f64>() / rf;
            (log_z.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / (rf - 1.0)).sqrt()
        } else {
            // A replicate with likelihood 0: an unbounded spread.
            f64::INFINITY
        };
        (rel.sqrt(), sd)
    };
    ReplicateEvidence {
        log_evidence: max + (sum / rf).ln(),
        log_evidence_se: se,
        log_sd: sd,
        effective_replicates: 1.0 / weights.iter().map(|w| w * w).sum::<f64>(),
        weights,
    }
}

/// The pooled output of the replicates `outputs` (in replicate order):
/// their clouds one after the other (replicate `r`'s θ-particles at
/// `r·Nθ..(r+1)·Nθ`), log-weights set so that the normalised weights are
/// `Ẑ_r / Σ Ẑ` times replicate `r`'s own; the combined evidence and its
/// replicate-based error; `Nx` the largest at the end; resamplings summed.
/// It has no step records or final move of its own (those are the
/// replicates').
pub fn pool(outputs: &[Smc2Output]) -> (Smc2Output, ReplicateEvidence) {
    let log_z: Vec<f64> = outputs.iter().map(|o| o.log_evidence).collect();
    let ev = combine(&log_z);
    let mut particles = Vec::with_capacity(outputs.iter().map(|o| o.particles.len()).sum());
    for (o, w) in outputs.iter().zip(&ev.weights) {
        for (p, wi) in o.particles.iter().zip(normalised(&o.particles)) {
            let mut q = p.clone();
            q.log_weight = w.ln() + wi.ln();
            particles.push(q);
        }
    }
    let pooled = Smc2Output {
        particles,
        nx: outputs.iter().map(|o| o.nx).max().unwrap_or(0),
        log_evidence: ev.log_evidence,
        log_evidence_se: ev.log_evidence_se,
        resamplings: outputs.iter().map(|o| o.resamplings).sum(),
        steps: Vec::new(),
        final_move: None,
    };
    (pooled, ev)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mean of `Ẑ_r`, the delta-method error and the sd of `log Ẑ_r`
    /// by hand for three replicates.
    #[test]
    fn combine_is_the_mean_of_the_evidences_with_the_delta_method_error() {
        let z = [2.0_f64, 4.0, 6.0];
        let log_z: Vec<f64> = z.iter().map(|x| x.ln()).collect();
        let c = combine(&log_z);
        assert!((c.log_evidence - 4.0_f64.ln()).abs() < 1e-12);
        // Ẑ_r/Ẑ = 0.5, 1, 1.5: Σ (u − 1)² = 0.5; / (3 · 2) = 1/12.
        assert!((c.log_evidence_se - (1.0_f64 / 12.0).sqrt()).abs() < 1e-12);
        let m = log_z.iter().sum::<f64>() / 3.0;
        let sd = (log_z.iter().map(|l| (l - m).powi(2)).sum::<f64>() / 2.0).sqrt();
        assert!((c.log_sd - sd).abs() < 1e-12);
        assert!((c.effective_replicates - 144.0 / 56.0).abs() < 1e-12);
        assert!((c.weights[2] - 0.5).abs() < 1e-12);
        // Three replicates are too few to trust, whatever their spread.
        assert!(!c.se_reliable());
    }

    /// Far apart evidences: the mean rests on one replicate, the delta
    /// method's error stops at 1 and the combination says it is not
    /// reliable; close ones with enough replicates are.
    #[test]
    fn reliability_needs_enough_replicates_that_agree() {
        let spread: Vec<f64> = (0..10).map(|r| -100.0 - 5.0 * f64::from(r)).collect();
        let c = combine(&spread);
        assert!(c.log_evidence_se <= 1.0 + 1e-12);
        assert!(c.effective_replicates < 1.05, "{c:?}");
        assert!(!c.se_reliable());
        let close: Vec<f64> = (0..10).map(|r| -100.0 + 0.05 * f64::from(r)).collect();
        let c = combine(&close);
        assert!(c.se_reliable(), "{c:?}");
        assert!(c.log_evidence_se < 0.05);
        // A replicate with likelihood 0 counts as Ẑ_r = 0.
        let c = combine(&[f64::NEG_INFINITY, 0.0]);
        assert!((c.log_evidence - 0.5_f64.ln()).abs() < 1e-12);
        assert_eq!(c.log_sd, f64::INFINITY);
        assert!(!c.se_reliable());
    }
}
