//! One run per root: an exclusive `flock` on `{state}/lock`, released by the kernel when the
//! process ends however it ends (a SIGKILLed run never leaves a stale lock).

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::error::{Error, ErrorKind, Result};

/// The lock file for a state directory: outside the root (in the temporary directory), named by a
/// digest of the state directory's canonical path, so that taking the lock writes nothing under
/// the root.
pub fn path_for(state_dir: &Path) -> std::path::PathBuf {
    let canonical = canonical_or_given(state_dir);
    let digest = crate::pki::sha256_hex(canonical.as_os_str().as_encoded_bytes());
    std::env::temp_dir().join(format!("bootlet-{}.lock", &digest[..20]))
}

/// The canonical form of the longest existing prefix of `p`, with the rest appended, so that two
/// spellings of one directory (symlinks, `..`) give one lock even before the directory exists.
fn canonical_or_given(p: &Path) -> std::path::PathBuf {
    let mut existing = p.to_path_buf();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (
            existing.file_name().map(|n| n.to_os_string()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => break,
        }
    }
    let mut out = existing.canonicalize().unwrap_or(existing);
    for part in rest.into_iter().rev() {
        out.push(part);
    }
    out
}

/// A held lock; dropping it releases the lock.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
}

/// Takes the lock at `path` or fails at once naming the holder (pid, command and start time the
/// holder wrote into the file).
pub fn acquire(path: &Path, command: &str) -> Result<RunLock> {
    let mut file = crate::files::open_lock_file(path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let holder = if holder.is_empty() {
                "another bootlet process".to_string()
            } else {
                holder.to_string()
            };
            return Err(Error::new(
                ErrorKind::Conflict,
                format!(
                    "another bootlet run is working on this root ({holder}; lock {}); wait for it to finish, or stop it, then rerun",
                    path.display()
                ),
            ));
        }
        Err(TryLockError::Error(e)) => return Err(Error::io("lock", path, e)),
    }
    let info = format!(
        "pid {}, `{command}`, started {}",
        std::process::id(),
        super::journal::now_rfc3339()
    );
    file.set_len(0).map_err(|e| Error::io("write", path, e))?;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| Error::io("write", path, e))?;
    file.write_all(info.as_bytes())
        .map_err(|e| Error::io("write", path, e))?;
    Ok(RunLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_with_the_first_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state/lock");
        let first = acquire(&p, "bootlet join").unwrap();
        let e = acquire(&p, "bootlet join").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert!(
            e.message().contains(&format!("pid {}", std::process::id())),
            "{e}"
        );
        drop(first);
        acquire(&p, "bootlet join").unwrap();
    }
}
