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

/// The file name of an SMC² run's checkpoint.
pub const SMC2_FILE: &str = "smc2-checkpoint.json";

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
    /// The settings the run was started with (absent in checkpoints of
    /// older pcmc versions: those resume only with the same flags).
    #[serde(default)]
    pub run: Option<crate::settings::RunSettings>,
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
    write_envelope(&dir.join(FILE), FORMAT, c)
}

/// Reads and verifies the checkpoint in `dir`; `Ok(None)` if there is none.
///
/// # Errors
/// An input error (exit status 2) if the file is unreadable, truncated,
/// corrupted (checksum mismatch) or of another format version.
pub fn read(dir: &Path) -> Result<Option<Checkpoint>> {
    read_envelope(&dir.join(FILE), FORMAT)
}

const FORMAT: &str = "pcmc-checkpoint";

/// Writes `payload` to `path` atomically in the checksummed envelope,
/// tagged `format` (version 1).
///
/// # Errors
/// I/O failures.
pub fn write_envelope<T: Serialize>(path: &Path, format: &str, payload: &T) -> Result<()> {
    let payload = serde_json::to_string(payload)?;
    let env = Envelope {
        format: format.into(),
        version: 1,
        sha256: hex(&Sha256::digest(payload.as_bytes())),
        payload,
    };
    crate::fsio::write_atomic(path, serde_json::to_string(&env)?.as_bytes())?;
    if let Some(d) = path.parent().and_then(|d| std::fs::File::open(d).ok()) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Reads and verifies an envelope tagged `format` at `path`; `Ok(None)` if
/// there is no file.
///
/// # Errors
/// An input error (exit status 2) if the file is unreadable, truncated,
/// corrupted (checksum mismatch), of another format or version, or its
/// payload does not parse.
pub fn read_envelope<T: serde::de::DeserializeOwned>(
    path: &Path,
    format: &str,
) -> Result<Option<T>> {
    if !path.exists() {
        return Ok(None);
    }
    let text =
        std::fs::read(path).map_err(|e| input(path, format!("cannot read the checkpoint: {e}")))?;
    let env: Envelope = serde_json::from_slice(&text).map_err(|e| {
        input(
            path,
            format!("not a valid checkpoint (truncated or corrupted?): {e}"),
        )
    })?;
    if env.format != format || env.version != 1 {
        return Err(input(
            path,
            format!(
                "unsupported checkpoint format {:?} version {}",
                env.format, env.version
            ),
        ));
    }
    let sum = hex(&Sha256::digest(env.payload.as_bytes()));
    if sum != env.sha256 {
        return Err(input(
            path,
            "checksum mismatch: the checkpoint is corrupted",
        ));
    }
    let c: T = serde_json::from_str(&env.payload)
        .map_err(|e| input(path, format!("malformed checkpoint payload: {e}")))?;
    Ok(Some(c))
}
