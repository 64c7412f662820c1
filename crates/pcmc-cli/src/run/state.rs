//! What the phases of a run share while it is in progress: the chains, the
//! rows written so far, the statistics, and how chain groups exchange their
//! chains.

use super::RunRecord;
use super::setup::Setup;
use crate::checkpoint::{self, Checkpoint};
use crate::fsio::RunLock;
use crate::output::{ChainRow, ChainWriter};
use crate::summary::RunStats;
use anyhow::Result;
use pcmc_core::ChainGroup;
use pcmc_core::LikelihoodExecutor;
use pcmc_core::pmmh::{ChainState, IterationRecord};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// The state of a run in progress.
pub(super) struct RunProgress {
    /// The run directory's lock (the writing process only), held to the end.
    pub(super) _lock: Option<RunLock>,
    pub(super) record: RunRecord,
    pub(super) writer: Option<ChainWriter>,
    pub(super) rows: Vec<ChainRow>,
    pub(super) states: Vec<ChainState>,
    pub(super) stats: RunStats,
    /// The first iteration still to run.
    pub(super) first: u64,
    /// Wall seconds of earlier segments of a resumed run.
    pub(super) wall_before: f64,
    /// Start of this segment.
    pub(super) segment: Instant,
}

impl RunProgress {
    /// Writes the checkpoint after iteration `it` (root only).
    pub(super) fn save(&mut self, s: &Setup, it: u64) -> Result<()> {
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        writer.sync()?;
        let mut st = self.stats.clone();
        st.wall_seconds = self.wall_before + self.segment.elapsed().as_secs_f64();
        checkpoint::write(
            &s.dir,
            &Checkpoint {
                fingerprint: s.fingerprint.clone(),
                iteration: it,
                rows: self.rows.len() as u64,
                chains: self.states.clone(),
                stats: st,
                run: Some(s.settings.clone()),
            },
        )
    }
}

pub(super) fn row_of(st: &ChainState, accepted: bool) -> ChainRow {
    ChainRow {
        chain: st.chain,
        iteration: st.iteration,
        loglik: st.loglik,
        accepted,
        theta: st.theta.clone(),
    }
}

/// Adds a record's filter pass to the run statistics (this worker's own
/// share: with several chain groups, the totals are formed at the end).
pub(super) fn account(rec: &IterationRecord, stats: &mut RunStats) {
    if let Some(f) = &rec.filter {
        stats.filter_passes += 1;
        stats.filter_steps += f.ess.len() as u64;
        stats.stages.add(&f.times);
        stats.balance.add(&f.balance);
        stats.task_retries += f.task_retries;
        stats.jobs += f.jobs;
        stats.jobs_resubmitted += f.jobs_resubmitted;
        stats.bytes_sent += f.bytes_sent;
        stats.rows_moved += f.rows_moved;
    }
}

/// One chain's state after an iteration, as chain groups share it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Shared {
    /// The chain's position in the run (0 for its first chain).
    pub(super) index: usize,
    pub(super) state: ChainState,
    pub(super) accepted: bool,
    pub(super) kept: bool,
}

/// Exchanges the chains each group ran this iteration (`mine`) so that every
/// worker learns all `chains` of them; returns them in chain order.
pub(super) fn share_chains(
    exec: &mut dyn LikelihoodExecutor,
    group: ChainGroup,
    chains: usize,
    mine: Vec<Shared>,
) -> Result<Vec<Shared>> {
    if group.count == 1 {
        return Ok(mine);
    }
    // Group leaders speak for their groups; the others send nothing.
    let bytes = if group.leader {
        serde_json::to_vec(&mine)?
    } else {
        Vec::new()
    };
    let mut all: Vec<Shared> = Vec::with_capacity(chains);
    for part in exec.all_gather_bytes(&bytes)? {
        if !part.is_empty() {
            all.extend(serde_json::from_slice::<Vec<Shared>>(&part)?);
        }
    }
    all.sort_by_key(|s| s.index);
    if all.len() != chains || all.iter().enumerate().any(|(i, s)| s.index != i) {
        anyhow::bail!("chain groups returned an inconsistent set of chains");
    }
    Ok(all)
}
