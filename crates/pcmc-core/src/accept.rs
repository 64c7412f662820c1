//! The Metropolis–Hastings acceptance test of one proposal, shared by the
//! PMMH loop (which makes it) and the particle filter (which stops a pass
//! early once the test can no longer pass).

/// The Metropolis–Hastings acceptance test of one proposal, fixed before its
/// filter pass runs: everything but the proposal's log-likelihood estimate.
///
/// The proposal is accepted iff `ln u < ℓ̂' − ℓ̂ + ln p(θ') − ln p(θ) + J`,
/// evaluated left to right by [`AcceptTest::accepts`]. That expression is
/// non-decreasing in `ℓ̂'` in floating point (each operation is a correctly
/// rounded, monotone function of its argument), so if a value `b ≥ ℓ̂'` is
/// rejected, `ℓ̂'` is rejected too: this is what makes early rejection
/// exact (see [`crate::filter::FilterProblem::cannot_accept`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AcceptTest {
    /// `ln u` of the iteration's keyed uniform.
    pub log_u: f64,
    /// The current state's log-likelihood estimate.
    pub current_loglik: f64,
    /// The proposal's log prior density.
    pub log_prior: f64,
    /// The current state's log prior density.
    pub current_log_prior: f64,
    /// The log Jacobian of the log-scale random walk, `Σ (ln θ'_i − ln θ_i)`.
    pub log_jacobian: f64,
}

impl AcceptTest {
    /// Whether a proposal whose log-likelihood estimate is `loglik` is
    /// accepted. A −∞ or NaN estimate is never accepted; a finite one always
    /// is when the current estimate is −∞.
    #[inline]
    pub fn accepts(&self, loglik: f64) -> bool {
        if !(loglik > f64::NEG_INFINITY) || self.log_prior == f64::NEG_INFINITY {
            false
        } else if self.current_loglik == f64::NEG_INFINITY {
            true
        } else {
            let log_alpha = loglik - self.current_loglik + self.log_prior - self.current_log_prior
                + self.log_jacobian;
            self.log_u < log_alpha
        }
    }
}
