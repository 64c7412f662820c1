//! Phase 3 of a run: the iteration loop, its progress display, its
//! checkpoints and the signals that stop it cleanly.

use super::RunOutcome;
use super::setup::Setup;
use super::state::{RunProgress, Shared, account, row_of, share_chains};
use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

pub(crate) fn signal_flag() -> Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [SIGTERM, SIGINT] {
        // A second signal while a checkpoint is pending stops at once.
        signal_hook::flag::register_conditional_shutdown(sig, 128 + sig, flag.clone())?;
        signal_hook::flag::register(sig, flag.clone())?;
    }
    signal_hook::flag::register(SIGUSR1, flag.clone())?;
    Ok(flag)
}

struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
    last_log: Instant,
    start: Instant,
    total: u64,
}

impl Progress {
    fn new(total: u64, quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::new(total);
            b.set_style(
                ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:30}] {pos}/{len} it ({per_sec}, ETA {eta}) {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            b
        });
        Progress {
            bar,
            quiet,
            last_log: Instant::now(),
            start: Instant::now(),
            total,
        }
    }

    fn update(&mut self, done: u64, acceptance: f64) {
        if let Some(b) = &self.bar {
            b.set_position(done);
            b.set_message(format!("acceptance {acceptance:.2}"));
        } else if !self.quiet
            && (self.last_log.elapsed() >= Duration::from_secs(10) || done == self.total)
        {
            let el = self.start.elapsed().as_secs_f64();
            let rate = done as f64 / el.max(1e-9);
            let eta = (self.total - done) as f64 / rate.max(1e-9);
            tracing::info!(
                "iteration {done}/{} ({rate:.2} it/s, acceptance {acceptance:.2}, elapsed {el:.0} s, ETA {eta:.0} s)",
                self.total
            );
            self.last_log = Instant::now();
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Phase 3: the iteration loop. Every chain of this worker's group takes a
/// step, the groups share their chains, kept rows are written; a checkpoint
/// is written every `checkpoint_every` iterations, every 10 minutes and when
/// a signal arrives (the run then stops with [`RunOutcome::Interrupted`]).
pub(super) fn iterate(
    s: &mut Setup,
    r: &mut RunProgress,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<RunOutcome> {
    let pmmh = &s.prep.pmmh;
    let total = pmmh.total_iterations();
    let mut progress = Progress::new(total, s.quiet);
    let mut last_save = Instant::now();
    for it in r.first..=total {
        // Where to go back to if the cluster is lost during the iteration.
        let before = (r.states.clone(), r.stats.clone());
        let mut lost = None;
        let mut cut = false;
        let mut mine = Vec::new();
        for (i, st) in r.states.iter_mut().enumerate() {
            if !s.group.runs(i) {
                continue;
            }
            let rec = match pmmh.step(s.exec.as_mut(), st) {
                Ok(rec) => rec,
                Err(pcmc_core::Error::Unavailable(why)) => {
                    lost = Some(why);
                    break;
                }
                Err(pcmc_core::Error::Interrupted) => {
                    cut = true;
                    break;
                }
                Err(e) => return Err(e.into()),
            };
            account(&rec, &mut r.stats);
            if s.exec.workers() > 1 {
                let mut v = rec.theta.clone();
                v.push(rec.loglik);
                s.exec.check_consensus(&v)?;
            }
            mine.push(Shared {
                index: i,
                state: st.clone(),
                accepted: rec.accepted,
                kept: rec.kept,
            });
        }
        if cut {
            // A signal during the iteration: back to its start, which the
            // resumed run takes again (every estimate is keyed, so the
            // chain is the same).
            (r.states, r.stats) = before;
            r.save(s, it - 1)?;
            progress.finish();
            if let Some(w) = r.writer.take() {
                w.finish()?;
            }
            if s.root {
                tracing::warn!(
                    "stopped by a signal during iteration {it}; checkpoint written after iteration {}: continue with `{}`",
                    it - 1,
                    super::resume::hint(&s.job_path, &s.dir)
                );
            }
            return Ok(RunOutcome::Interrupted);
        }
        if let Some(why) = lost {
            (r.states, r.stats) = before;
            r.save(s, it - 1)?;
            progress.finish();
            if let Some(w) = r.writer.take() {
                w.finish()?;
            }
            return Ok(RunOutcome::ClusterLost(format!(
                "{why}; checkpoint written after iteration {}: continue with `{}` once the cluster is back",
                it - 1,
                super::resume::hint(&s.job_path, &s.dir)
            )));
        }
        // Chains of other groups arrive here; rows go out in chain order.
        for sh in share_chains(s.exec.as_mut(), s.group, r.states.len(), mine)? {
            if sh.kept {
                r.stats.account_kept(&sh.state);
            }
            if s.group.count > 1 {
                r.states[sh.index] = sh.state.clone();
            }
            if sh.kept
                && let Some(w) = r.writer.as_mut()
            {
                let row = row_of(&sh.state, sh.accepted);
                w.write(&row)?;
                r.rows.push(row);
            }
        }
        for m in pmmh.relocate(&mut r.states) {
            if s.root {
                tracing::warn!(
                    "burn-in: chain {} moved to chain {}'s state after iteration {}: its log posterior lay {:.1} below (allowed {:.1}; a local mode or a region the filter cannot explain, near θ = {})",
                    m.chain,
                    m.to,
                    m.iteration,
                    m.gap,
                    m.allowed,
                    fmt_theta(&m.theta)
                );
            }
        }
        if s.root {
            log_checks(&before.0, &r.states);
        }
        let acc = r
            .states
            .iter()
            .map(|st| st.accepted as f64 / st.proposed.max(1) as f64)
            .sum::<f64>()
            / r.states.len() as f64;
        progress.update(it, acc);
        // Every rank must stop at the same iteration.
        let interrupted = s
            .exec
            .any_worker(stop.load(std::sync::atomic::Ordering::SeqCst))?;
        if interrupted
            || it == total
            || it.is_multiple_of(s.checkpoint_every)
            || last_save.elapsed() > Duration::from_secs(600)
        {
            r.save(s, it)?;
            last_save = Instant::now();
        }
        if interrupted && it < total {
            progress.finish();
            if let Some(w) = r.writer.take() {
                w.finish()?;
            }
            if s.root {
                tracing::warn!(
                    "stopped by a signal after iteration {it}; checkpoint written: continue with `{}`",
                    super::resume::hint(&s.job_path, &s.dir)
                );
            }
            return Ok(RunOutcome::Interrupted);
        }
    }
    progress.finish();
    if let Some(w) = r.writer.take() {
        w.finish()?;
    }
    Ok(RunOutcome::Finished)
}

fn fmt_theta(theta: &[f64]) -> String {
    theta
        .iter()
        .map(|x| format!("{x:.4e}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Logs the burn-in checks each chain made during the iteration: a changed
/// particle count at info level, a stuck chain as a warning.
fn log_checks(before: &[pcmc_core::pmmh::ChainState], after: &[pcmc_core::pmmh::ChainState]) {
    for (b, a) in before.iter().zip(after) {
        for k in a.checks.iter().skip(b.checks.len()) {
            if k.stuck {
                tracing::warn!(
                    "burn-in: chain {} was stuck after iteration {} (no move accepted in the last {} iterations; its estimate {:.1} was above all {} fresh estimates at its θ, mean {:.1}, sd {:.2}): it continues from a fresh estimate {:.1} with {} particles",
                    a.chain,
                    k.iteration,
                    k.iteration - a.checks.iter().rev().nth(1).map_or(0, |p| p.iteration),
                    k.loglik_before,
                    k.passes,
                    k.mean,
                    k.sd,
                    k.loglik_after,
                    k.next
                );
            } else if k.next != k.particles || k.kind == pcmc_core::pmmh::CheckKind::Kept {
                tracing::info!(
                    "{} check of chain {} after iteration {}: sd(log-likelihood) {:.2} with {} particles{} → {} particles",
                    match k.kind {
                        pcmc_core::pmmh::CheckKind::Start => "start",
                        pcmc_core::pmmh::CheckKind::BurnIn => "burn-in",
                        pcmc_core::pmmh::CheckKind::Kept => "end-of-burn-in",
                    },
                    a.chain,
                    k.iteration,
                    k.sd,
                    k.particles,
                    if k.collapsed > 0 {
                        format!(" ({} of {} passes collapsed)", k.collapsed, k.passes)
                    } else {
                        String::new()
                    },
                    k.next
                );
            }
        }
    }
}
