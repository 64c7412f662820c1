//! File-system helpers of a run directory: atomic writes, the output
//! directory's creation and the run-directory lock.

use crate::error::input;
use anyhow::{Context, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Writes `path` atomically: a temporary file beside it (named for this
/// process and write, so concurrent writers never share one), fsync,
/// rename.
///
/// # Errors
/// I/O failures.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        SERIAL.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| -> Result<()> {
        let mut f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes)
            .with_context(|| format!("writing {}", tmp.display()))?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Creates the output directory `dir` (and its parents) and checks that it
/// is writable.
///
/// # Errors
/// An input error naming the directory.
pub fn create_output_dir(dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(input(dir, "the output path exists and is not a directory"));
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| input(dir, format!("cannot create the output directory: {e}")))?;
    let probe = dir.join(format!(".pcmc-write-test.{}", std::process::id()));
    std::fs::write(&probe, b"")
        .map_err(|e| input(dir, format!("the output directory is not writable: {e}")))?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// The name of the lock file in a run directory.
pub const LOCK_FILE: &str = ".pcmc.lock";

/// This machine's host name (for messages naming where a process runs).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown host".into())
}

/// An exclusive lock on a run directory, held while the value lives: one
/// process at a time writes a run directory (`pcmc run`, `report`, `merge`).
///
/// The lock is an advisory `flock` on `DIR/.pcmc.lock`, which the kernel
/// releases when the process ends however it ends, so a crashed run leaves
/// no stale lock. The file records the holder (process id, host, start
/// time, command; see [`RunLock::announce`]) for the message a second
/// process gets.
#[derive(Debug)]
pub struct RunLock {
    file: File,
    path: PathBuf,
}

impl RunLock {
    /// Locks `dir` (which must exist), or fails naming the holder.
    ///
    /// # Errors
    /// An input error (exit status 2) when another process holds the lock,
    /// naming it; an input error when the lock file cannot be opened.
    pub fn acquire(dir: &Path) -> Result<RunLock> {
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| input(&path, format!("cannot open the run directory's lock: {e}")))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = (&file).read_to_string(&mut holder);
                let holder = holder.trim();
                let holder = if holder.is_empty() {
                    "another process".to_string()
                } else {
                    holder.to_string()
                };
                return Err(input(
                    dir,
                    format!(
                        "the run directory is in use by {holder}: wait for it to finish, stop it, or write to another directory (--out)"
                    ),
                ));
            }
            Err(TryLockError::Error(e)) => {
                return Err(input(&path, format!("cannot lock the run directory: {e}")));
            }
        }
        Ok(RunLock { file, path })
    }

    /// Records this process as the holder (process id, host, start time,
    /// command) for the message another process gets. Called once the
    /// holder starts to change the directory, so a run refused before that
    /// (e.g. over a bad checkpoint) leaves the directory byte for byte as
    /// it was.
    ///
    /// # Errors
    /// I/O failures.
    pub fn announce(&mut self) -> Result<()> {
        let file = &mut self.file;
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let command: Vec<String> = std::env::args().collect();
        let who = format!(
            "pcmc (pid {} on host {}, since unix time {since}: {})\n",
            std::process::id(),
            host_name(),
            command.join(" ")
        );
        file.set_len(0)?;
        file.rewind()?;
        file.write_all(who.as_bytes())?;
        file.flush()?;
        Ok(())
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_leave_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("a.json")]);
    }

    #[test]
    fn a_second_lock_names_the_holder_and_the_first_is_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let mut held = RunLock::acquire(dir.path()).unwrap();
        held.announce().unwrap();
        let err = RunLock::acquire(dir.path()).unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        assert!(err.downcast_ref::<crate::error::InputError>().is_some());
        drop(held);
        RunLock::acquire(dir.path()).unwrap();
    }
}
