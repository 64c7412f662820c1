//! Piecewise-constant covariates and the propagation that honours them.
//!
//! A covariate table gives, from each of its times on, a value per named
//! covariate (a school term, an intervention). A reaction whose rate is
//! `θ_j × c` ([`crate::model::Network::with_covariate`]) has hazard
//! `θ_j · c(t) · …`. The simulation stays exact: a particle stops at every
//! breakpoint inside an observation interval and restarts its clocks with
//! the new hazards (memorylessness makes this the same law as one run with
//! time-varying hazards). A breakpoint is not an observation: nothing is
//! weighed or resampled there.
//!
//! Random streams: the `m`-th segment of an interval (`m ≥ 1`) draws from
//! the particle's `Propagate` stream with index `i + m·2³²`; segment 0 is
//! the stream without covariates, so a model without covariates draws
//! exactly what it drew before.

use crate::error::{Error, Result};
use crate::model::Network;
use crate::rng::StreamKey;
use crate::ssa::{BlockScratch, KernelChoice, Outcome, Ssa, SsaCounters};
use serde::{Deserialize, Serialize};

/// A table of piecewise-constant covariates: `values[r][c]` holds from
/// `times[r]` until the next time. (Checked again when it arrives on the
/// wire.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "CovariatesWire", into = "CovariatesWire")]
pub struct Covariates {
    names: Vec<String>,
    times: Vec<f64>,
    values: Vec<Vec<f64>>,
}

/// The wire form of [`Covariates`].
#[derive(Serialize, Deserialize)]
struct CovariatesWire {
    names: Vec<String>,
    times: Vec<f64>,
    values: Vec<Vec<f64>>,
}

impl TryFrom<CovariatesWire> for Covariates {
    type Error = Error;
    fn try_from(w: CovariatesWire) -> Result<Self> {
        Covariates::new(w.names, w.times, w.values)
    }
}

impl From<Covariates> for CovariatesWire {
    fn from(c: Covariates) -> Self {
        CovariatesWire {
            names: c.names,
            times: c.times,
            values: c.values,
        }
    }
}

impl Covariates {
    /// Validates a table.
    ///
    /// # Errors
    /// [`Error::Data`] for no rows or columns, a repeated name, times not
    /// finite and strictly increasing, a row of the wrong length, or a value
    /// that is not a finite number ≥ 0.
    pub fn new(names: Vec<String>, times: Vec<f64>, values: Vec<Vec<f64>>) -> Result<Self> {
        if names.is_empty() || times.is_empty() {
            return Err(Error::Data("the covariate table is empty".into()));
        }
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                return Err(Error::Data(format!("covariate {n:?} appears twice")));
            }
        }
        if values.len() != times.len() {
            return Err(Error::Data(format!(
                "{} covariate times but {} rows",
                times.len(),
                values.len()
            )));
        }
        for (i, (t, row)) in times.iter().zip(&values).enumerate() {
            if !t.is_finite() || (i > 0 && *t <= times[i - 1]) {
                return Err(Error::Data(format!(
                    "covariate row {}: time {t} is not finite and after the previous one",
                    i + 1
                )));
            }
            if row.len() != names.len() {
                return Err(Error::Data(format!(
                    "covariate row {}: {} values for {} covariates",
                    i + 1,
                    row.len(),
                    names.len()
                )));
            }
            if let Some((c, v)) = row
                .iter()
                .enumerate()
                .find(|(_, v)| !(v.is_finite() && **v >= 0.0))
            {
                return Err(Error::Data(format!(
                    "covariate row {}, column {:?}: {v} is not a finite number ≥ 0",
                    i + 1,
                    names[c]
                )));
            }
        }
        Ok(Covariates {
            names,
            times,
            values,
        })
    }

    /// The covariates' names.
    pub fn names(&self) -> &[String] {
        &self.names
    }
    /// The breakpoints.
    pub fn times(&self) -> &[f64] {
        &self.times
    }
    /// The row in force at `t` (the last time ≤ `t`), if any.
    pub fn row_at(&self, t: f64) -> Option<usize> {
        self.times.partition_point(|s| *s <= t).checked_sub(1)
    }

    /// Checks that the table covers `net`'s covariates from `t0` on.
    ///
    /// # Errors
    /// [`Error::Data`] naming a missing covariate, or a table that starts
    /// after `t0`.
    pub fn check_for(&self, net: &Network, t0: f64) -> Result<()> {
        for n in net.covariate_names() {
            if !self.names.contains(&n) {
                return Err(Error::Data(format!(
                    "the covariate table has no column {n:?} (columns: {})",
                    self.names.join(", ")
                )));
            }
        }
        if self.row_at(t0).is_none() {
            return Err(Error::Data(format!(
                "the covariate table starts at {}, after the initial time {t0}",
                self.times[0]
            )));
        }
        Ok(())
    }
}

/// The compiled dynamics of one pass at one θ: one [`Ssa`], or one per
/// covariate row with the breakpoints where they change.
#[derive(Debug, Clone)]
pub struct Dynamics {
    ssas: Vec<Ssa>,
    /// The covariate times (empty without covariates).
    breaks: Vec<f64>,
}

/// Segment `m`'s stream index for particle `i`.
#[inline]
pub fn segment_index(i: u64, m: u64) -> u64 {
    i | (m << 32)
}

impl Dynamics {
    /// Compiles `net` at `theta`; with covariates, one SSA per row of
    /// `covariates` (rates `θ_j × c_r`).
    ///
    /// # Panics
    /// If the network names a covariate that `covariates` lacks
    /// ([`Covariates::check_for`] is checked by the problem's constructor).
    pub fn new(
        net: &Network,
        theta: &[f64],
        covariates: Option<&Covariates>,
        caps: &[u64],
        max_events: u64,
    ) -> Self {
        let base = net.rates(theta);
        match covariates {
            Some(cov) if !net.covariate_names().is_empty() => {
                let col: Vec<Option<usize>> = (0..net.reactions().len())
                    .map(|j| {
                        net.covariate_of(j).map(|n| {
                            cov.names
                                .iter()
                                .position(|c| c == n)
                                .expect("checked by Covariates::check_for")
                        })
                    })
                    .collect();
                let ssas = cov
                    .values
                    .iter()
                    .map(|row| {
                        let rates = base
                            .iter()
                            .zip(&col)
                            .map(|(r, c)| c.map_or(*r, |c| r * row[c]))
                            .collect();
                        Ssa::with_rates(net, rates, caps, max_events)
                    })
                    .collect();
                Dynamics {
                    ssas,
                    breaks: cov.times.clone(),
                }
            }
            _ => Dynamics {
                ssas: vec![Ssa::with_rates(net, base, caps, max_events)],
                breaks: Vec::new(),
            },
        }
    }

    /// The SSA in force at `t` (the first one before the first breakpoint).
    pub fn ssa_at(&self, t: f64) -> &Ssa {
        let r = self.breaks.partition_point(|s| *s <= t).saturating_sub(1);
        &self.ssas[r]
    }

    /// Propagates particles `0..len` of a block from `t0` to `t1`,
    /// stopping at every breakpoint inside `(t0, t1)`; particle `j` draws
    /// segment `m` from `stream(j, m)` (the particle's `Propagate` stream
    /// at index [`segment_index`]). Writes each particle's outcome (the
    /// first that is not [`Outcome::Reached`]) and returns the summed
    /// counters.
    #[allow(clippy::too_many_arguments)]
    pub fn propagate(
        &self,
        kernel: KernelChoice,
        block: &mut [u64],
        stride: usize,
        len: usize,
        t0: f64,
        t1: f64,
        stream: impl Fn(usize, u64) -> StreamKey,
        outcomes: &mut [Outcome],
        scratch: &mut BlockScratch,
    ) -> SsaCounters {
        let start = self.breaks.partition_point(|s| *s <= t0);
        let end = self.breaks.partition_point(|s| *s < t1);
        if start >= end {
            return self.ssa_at(t0).propagate(
                kernel,
                block,
                stride,
                len,
                t0,
                t1,
                |j| stream(j, 0),
                outcomes,
                scratch,
            );
        }
        // Segments: [t0, b_start), [b_start, b_start+1), …, [b_end−1, t1).
        let mut cuts = vec![t0];
        cuts.extend_from_slice(&self.breaks[start..end]);
        cuts.push(t1);
        let mut total = SsaCounters::default();
        let mut seg = vec![Outcome::Reached; len];
        outcomes[..len].fill(Outcome::Reached);
        for (m, w) in cuts.windows(2).enumerate() {
            let c = self.ssa_at(w[0]).propagate(
                kernel,
                block,
                stride,
                len,
                w[0],
                w[1],
                |j| stream(j, m as u64),
                &mut seg,
                scratch,
            );
            total.add(&c);
            for (o, s) in outcomes.iter_mut().zip(&seg) {
                if *o == Outcome::Reached {
                    *o = *s;
                }
            }
        }
        total
    }
}
