//! One run per root: an exclusive `flock` on `{state}/lock`, released by the kernel when the
//! process ends however it ends (a SIGKILLed run never leaves a stale lock).

use std::fs::{File, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::error::{Error, ErrorKind, Result};

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
                    "another bootlet run holds the lock {} ({holder}); wait for it to finish, or stop it, then rerun",
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
