//! The one way bootlet writes files, and the two on-disk layouts.
//!
//! Every write goes to a temporary file in the target's own directory, is fsynced, renamed over the
//! target and the directory fsynced, so a reader (or a crash) sees the old file or the new one,
//! never a part. Modes are set on the temporary file before any byte is written, so a key is never
//! readable by others, not even for a moment. Directories bootlet creates are private (0700).
//! Every path is resolved under its root without following links ([`confined`]).

pub mod confined;
pub mod durability;
mod layout;

pub use layout::{Layout, LayoutKind, glob_match, host_path, relative_path};

use std::fs::{self, DirBuilder, Permissions};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, Result};

/// Prefix of the temporary files the writer creates beside its targets.
pub const TEMP_PREFIX: &str = ".bootlet-tmp-";

/// Mode of directories bootlet creates.
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// Mode of private keys and kubeconfigs.
pub const SECRET_FILE_MODE: u32 = 0o600;
/// Mode of certificates and other public files.
pub const PUBLIC_FILE_MODE: u32 = 0o644;

/// Creates `dir` and any missing parents with mode 0700, for directories the operator names
/// (`--dry-run-dir`, `sandbox --dir`, `demo --out`). Existing directories keep their mode.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(Error::conflict(format!(
                "{} exists but is not a directory; move it away",
                dir.display()
            )));
        }
        Err(_) => {}
    }
    DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(dir)
        .map_err(|e| Error::io("create directory", dir, e))?;
    // The process umask may have narrowed the mode further; widen back to exactly 0700 only for the
    // leaf, which we just created.
    fs::set_permissions(dir, Permissions::from_mode(PRIVATE_DIR_MODE))
        .map_err(|e| Error::io("set mode of", dir, e))?;
    Ok(())
}

/// Writes `contents` to the file `path` atomically with exactly `mode`, durable when it returns:
/// for files outside any layout (the sandbox's admin.conf, the dry-run report).
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Error::internal(format!(
            "{} has no parent directory",
            path.display()
        )));
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let name = format!("/{}", name.to_string_lossy());
    let dir = confined::Root::new(dir);
    blocking(|| {
        confined::write(&dir, &name, contents, mode)?;
        confined::sync_dir(&dir, "/")
    })
}

/// Runs file work that waits for the disk (a sync) so that an async runtime keeps serving its other
/// tasks: on a multi-threaded tokio runtime the worker hands them off first (which may start a
/// thread: not worth it for a write into the page cache); elsewhere it simply runs.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// The permission bits of `path`, following symlinks.
pub fn mode_of(path: &Path) -> Option<u32> {
    fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777)
}

/// The owner of `path`, following symlinks.
pub fn owner_of(path: &Path) -> Option<u32> {
    fs::metadata(path)
        .ok()
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
}

/// fsync calls made by this process (files and directories), for the benchmarks' profile.
pub static SYNCS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_sets_exact_mode_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key.pem");
        write_atomic(&p, b"one", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"one");
        assert_eq!(mode_of(&p), Some(0o600));
        write_atomic(&p, b"two", 0o644).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(mode_of(&p), Some(0o644));
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(TEMP_PREFIX))
            .collect();
        assert!(leftovers.is_empty());
    }
}
