//! `pcmc compare-models`.

use crate::error::{InputError, input};
use anyhow::Result;
use pcmc_core::smc2::{ModelEvidence, compare_models};
use serde_json::Value;
use std::path::PathBuf;

/// `pcmc compare-models`: each SMC² run's log evidence ± SE (a run with
/// replicates: their combined evidence and replicate error), the log Bayes
/// factors against the run of highest evidence (± the two errors in
/// quadrature: the runs' random streams are tagged by the model, so two
/// models' runs are independent even with one seed) and posterior model
/// probabilities (prior weights `weights`, equal if empty). Refuses runs
/// that are not SMC² or whose data differ; warns about runs that drew the
/// same random numbers.
///
/// # Errors
/// Input errors (exit 2) for unreadable or mismatched run directories.
pub fn compare(dirs: &[PathBuf], weights: &[f64]) -> Result<()> {
    if dirs.len() < 2 {
        return Err(InputError::flag("RUN_DIR", "give at least two run directories").into());
    }
    if !weights.is_empty() && weights.len() != dirs.len() {
        return Err(InputError::flag(
            "--prior-weights",
            format!("{} weights for {} runs", weights.len(), dirs.len()),
        )
        .into());
    }
    if weights.iter().any(|w| !(w.is_finite() && *w > 0.0)) {
        return Err(
            InputError::flag("--prior-weights", "weights must be finite and positive").into(),
        );
    }
    let mut rows = Vec::new();
    let mut streams: Vec<(u64, String, &PathBuf)> = Vec::new();
    let mut data_fp: Option<(String, &PathBuf)> = None;
    for (i, d) in dirs.iter().enumerate() {
        let path = d.join("summary.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| input(&path, format!("cannot read: {e}")))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| input(&path, format!("not a pcmc summary: {e}")))?;
        if v["method"].as_str() != Some("smc2") {
            return Err(input(
                &path,
                "method: not an SMC² run (only SMC² runs estimate the evidence)",
            ));
        }
        let field = |k: &str| {
            v[k].as_f64()
                .filter(|x| x.is_finite())
                .ok_or_else(|| input(&path, format!("{k}: missing or not a finite number")))
        };
        let log_z = field("log_evidence")?;
        // An SE without a positive variance estimate is unknown: the
        // Bayes factors against this run get no ±.
        let se = v["log_evidence_se"]
            .as_f64()
            .filter(|x| x.is_finite())
            .unwrap_or(f64::NAN);
        let name = d.display();
        if v["evidence_usable"].as_bool() == Some(false) {
            tracing::warn!(
                "{name}: its run says the evidence is not usable ({}): the comparison with it means nothing",
                v["evidence_failures"]
            );
        }
        if v["log_evidence_se_reliable"].as_bool() == Some(false) {
            let why = if v["replicates"].as_u64().unwrap_or(1) > 1 {
                format!(
                    "{} replicates whose log Ẑ spread with sd {:.2}",
                    v["replicates"],
                    v["replicate_log_evidence_sd"].as_f64().unwrap_or(f64::NAN)
                )
            } else {
                format!(
                    "{:.1} effective Eves",
                    v["effective_eves"].as_f64().unwrap_or(0.0)
                )
            };
            tracing::warn!(
                "{name}: its standard error is unreliable ({why}): the ± of its Bayes factors is likely far too small; \
                 rerun it with --replicates 8 or more"
            );
        }
        if let Some(seed) = v["seed"].as_u64() {
            // Runs before the streams were tagged by the model have no tag.
            let tag = v["stream_tag"].as_str().unwrap_or("").to_string();
            streams.push((seed, tag, d));
        }
        let fp = v["data_fingerprint"]
            .as_str()
            .ok_or_else(|| input(&path, "data_fingerprint: missing"))?
            .to_string();
        match &data_fp {
            None => data_fp = Some((fp, d)),
            Some((first, fd)) if *first != fp => {
                return Err(input(
                    &path,
                    format!(
                        "data_fingerprint: these data differ from those of {} ({fp} vs {first}): \
                         evidences of different data cannot be compared",
                        fd.display()
                    ),
                ));
            }
            Some(_) => {}
        }
        rows.push((
            v["job"].as_str().unwrap_or("?").to_string(),
            ModelEvidence {
                log_evidence: log_z,
                se,
                prior_weight: weights.get(i).copied().unwrap_or(1.0),
            },
        ));
    }
    for (i, (a, tag, da)) in streams.iter().enumerate() {
        let same = streams[i + 1..]
            .iter()
            .find(|(b, t, _)| b == a && (t == tag || t.is_empty() || tag.is_empty()));
        if let Some((_, _, db)) = same {
            tracing::warn!(
                "{} and {} drew the same random numbers (seed {a}{}): their errors are correlated and the ± of their \
                 Bayes factor, which assumes independent runs, is off; rerun one with another --seed",
                da.display(),
                db.display(),
                if tag.is_empty() {
                    ", from a pcmc that keyed SMC²'s streams by the seed alone"
                } else {
                    ", and the same model"
                }
            );
        }
    }
    let models: Vec<ModelEvidence> = rows.iter().map(|(_, m)| m.clone()).collect();
    let table = compare_models(&models);
    let labels: Vec<String> = dirs
        .iter()
        .zip(&rows)
        .map(|(d, (name, _))| format!("{name} ({})", d.display()))
        .collect();
    let w = labels.iter().map(|l| l.chars().count()).max().unwrap_or(3);
    println!(
        "{:<w$} {:>16} {:>20} {:>12}",
        "run", "log evidence", "log BF vs best", "P(model)"
    );
    for ((label, (_, m)), c) in labels.iter().zip(&rows).zip(&table) {
        println!(
            "{:<w$} {:>16} {:>20} {:>12}",
            label,
            format!("{:.3} ± {:.3}", m.log_evidence, m.se),
            format!("{:.3} ± {:.3}", c.log_bayes_factor, c.log_bayes_factor_se),
            format!("{:.4}", c.probability)
        );
    }
    if weights.is_empty() {
        println!("(equal prior model weights)");
    }
    Ok(())
}
