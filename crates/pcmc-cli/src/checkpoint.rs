//! Checkpoints: everything a run needs to continue bit for bit.
//!
//! `DIR/checkpoint.json` is a JSON envelope
//! `{"format": "pcmc-checkpoint", "version": 1, "sha256": H, "payload": P}`
//! where `P` is the [`Checkpoint`] serialised as a JSON *string* and `H` the
//! SHA-256 of that string's bytes, so corruption or truncation is detected
//! exactly. It is written atomically: temporary file, fsync, rename, fsync of
//! the directory.

use crate::error::input;
use crate::summary::RunStats;
use anyhow::Result;
use pcmc_core::pmmh::ChainState;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::Path;

/// The file name of the checkpoint in a run directory.
pub const FILE: &str = "checkpoint.json";

/// The state of a run after a completed iteration of every chain.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Fingerprint of the job and data ([`crate::job::Job::fingerprint`]).
    pub fingerprint: String,
    /// The last iteration completed by every chain.
    pub iteration: u64,
    /// Rows in `chain.csv` up to and including that iteration.
    pub rows: u64,
    /// The chains.
    pub chains: Vec<ChainState>,
    /// Run statistics accumulated so far.
    pub stats: RunStats,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    format: String,
    version: u32,
    sha256: String,
    payload: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes the checkpoint into `dir` atomically.
///
/// # Errors
/// I/O failures.
pub fn write(dir: &Path, c: &Checkpoint) -> Result<()> {
    let payload = serde_json::to_string(c)?;
    let env = Envelope {
        format: "pcmc-checkpoint".into(),
        version: 1,
        sha256: hex(&Sha256::digest(payload.as_bytes())),
        payload,
    };
    crate::fsio::write_atomic(&dir.join(FILE), serde_json::to_string(&env)?.as_bytes())?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads and verifies the checkpoint in `dir`; `Ok(None)` if there is none.
///
/// # Errors
/// An input error (exit status 2) if the file is unreadable, truncated,
/// corrupted (checksum mismatch) or of another format version.
pub fn read(dir: &Path) -> Result<Option<Checkpoint>> {
    let path = dir.join(FILE);
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read(&path)
        .map_err(|e| input(&path, format!("cannot read the checkpoint: {e}")))?;
    let env: Envelope = serde_json::from_slice(&text).map_err(|e| {
        input(
            &path,
            format!("not a valid checkpoint (truncated or corrupted?): {e}"),
        )
    })?;
    if env.format != "pcmc-checkpoint" || env.version != 1 {
        return Err(input(
            &path,
            format!(
                "unsupported checkpoint format {:?} version {}",
                env.format, env.version
            ),
        ));
    }
    let sum = hex(&Sha256::digest(env.payload.as_bytes()));
    if sum != env.sha256 {
        return Err(input(
            &path,
            "checksum mismatch: the checkpoint is corrupted",
        ));
    }
    let c: Checkpoint = serde_json::from_str(&env.payload)
        .map_err(|e| input(&path, format!("malformed checkpoint payload: {e}")))?;
    Ok(Some(c))
}
