//! One run per root: an exclusive `flock` on a private lock file, released by the kernel when the
//! process ends however it ends (a SIGKILLed run never leaves a stale lock).
//!
//! The file lives where only the root's owner can create it: `/run/bootlet/<digest>.lock` when
//! running as root (`/run/bootlet` is 0700 and root's; nothing is written under `--root`, and
//! every run on a root finds the same file whatever its `TMPDIR`), otherwise `{state}/lock`. It is
//! opened with `O_NOFOLLOW` relative to its directory, must be a regular file of the running
//! user before anything is written to it, and is unlinked (while still held) when the run ends, so
//! nothing accumulates. A run that locked a file someone unlinked meanwhile sees that the path no
//! longer names its inode and tries again.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use super::world::World;
use crate::error::{Error, ErrorKind, Result};
use crate::files::confined;

/// The directory of root's lock files.
pub const RUN_DIR: &str = "/run/bootlet";

/// A held lock; dropping it removes the file and releases the lock.
#[derive(Debug)]
pub struct RunLock {
    dir: OwnedFd,
    name: String,
    _file: std::fs::File,
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Unlinked while still held: a run that opened it meanwhile re-checks the inode.
        let _ = rustix::fs::unlinkat(&self.dir, self.name.as_str(), AtFlags::empty());
    }
}

/// The lock file for a state directory (a host path) when running as root.
pub fn root_lock_path(state_host: &Path) -> PathBuf {
    let canonical = canonical_or_given(state_host);
    let digest = crate::pki::sha256_hex(canonical.as_os_str().as_encoded_bytes());
    Path::new(RUN_DIR).join(format!("{}.lock", &digest[..20]))
}

/// The canonical form of the longest existing prefix of `p`, with the rest appended, so that two
/// spellings of one directory give one lock even before the directory exists.
fn canonical_or_given(p: &Path) -> PathBuf {
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

/// Opens (creating 0700) root's private lock directory, refusing one that is not root's own.
fn open_run_dir() -> Result<Option<OwnedFd>> {
    let run = Path::new(RUN_DIR);
    if !run.parent().is_some_and(Path::is_dir) {
        return Ok(None);
    }
    match rustix::fs::mkdir(run, Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(_) => return Ok(None),
    }
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let dir = rustix::fs::open(run, flags, Mode::empty()).map_err(|e| {
        Error::conflict(format!(
            "{RUN_DIR} is not a directory bootlet can use for its lock ({}); remove it",
            std::io::Error::from(e)
        ))
    })?;
    let st = rustix::fs::fstat(&dir).map_err(|e| Error::io("inspect", run, e.into()))?;
    if st.st_uid != 0 || st.st_mode & 0o022 != 0 {
        return Err(Error::conflict(format!(
            "{RUN_DIR} is not root's private directory (owner uid {}, mode {:04o}); remove it so that bootlet can make its own",
            st.st_uid,
            st.st_mode & 0o7777
        )));
    }
    Ok(Some(dir))
}

/// Where this world's lock lives: `(directory, file name, shown path)`.
fn location(world: &World) -> Result<(OwnedFd, String, String)> {
    let state_inside = world.layout().path("state").to_string();
    let state_host = world.write_host_path(&state_inside);
    if confined::euid() == 0
        && let Some(dir) = open_run_dir()?
    {
        let path = root_lock_path(&state_host);
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        return Ok((dir, name, path.display().to_string()));
    }
    let root = world.write_host_path("/");
    let dir =
        confined::open_dir(&confined::Root::new(root), &state_inside, true)?.expect("created");
    Ok((
        dir,
        "lock".into(),
        state_host.join("lock").display().to_string(),
    ))
}

/// Text a holder wrote into the lock, made safe to print: control characters (terminal escapes)
/// become `?`, and it is cut to 200 characters.
pub fn sanitized(text: &str) -> String {
    text.trim()
        .chars()
        .take(200)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Takes the lock of `world`'s root or fails at once naming the holder (pid, command and start
/// time the holder wrote into the file).
pub fn acquire(world: &World, command: &str) -> Result<RunLock> {
    let (dir, name, shown) = location(world)?;
    for _ in 0..20 {
        let flags = OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&dir, name.as_str(), flags, Mode::from_raw_mode(0o600))
            .map_err(|e| match e {
                Errno::LOOP => Error::conflict(format!(
                    "the lock file {shown} is a symbolic link, not bootlet's lock; remove it"
                )),
                e => Error::io("open the lock file", Path::new(&shown), e.into()),
            })?;
        let st = rustix::fs::fstat(&fd)
            .map_err(|e| Error::io("inspect", Path::new(&shown), e.into()))?;
        let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
        if kind != rustix::fs::FileType::RegularFile || st.st_uid != confined::euid() {
            return Err(Error::conflict(format!(
                "the lock file {shown} is not bootlet's (not a regular file of uid {}); remove it",
                confined::euid()
            )));
        }
        match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(Errno::WOULDBLOCK) => {
                let mut holder = String::new();
                let _ = std::fs::File::from(fd).read_to_string(&mut holder);
                let holder = sanitized(&holder);
                let holder = if holder.is_empty() {
                    "another bootlet process".to_string()
                } else {
                    holder
                };
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!(
                        "another bootlet run is working on this root ({holder}; lock {shown}); wait for it to finish, or stop it, then rerun"
                    ),
                ));
            }
            Err(e) => return Err(Error::io("lock", Path::new(&shown), e.into())),
        }
        // The holder before us may have unlinked the file we opened: lock the one at the path.
        let same = rustix::fs::statat(&dir, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|now| now.st_ino == st.st_ino && now.st_dev == st.st_dev);
        if !same {
            continue;
        }
        let mut file = std::fs::File::from(fd);
        let info = format!(
            "pid {}, `{command}`, started {}",
            std::process::id(),
            super::journal::now_rfc3339()
        );
        // A file we just created is empty; truncating it anyway costs an inode update.
        let emptied = if st.st_size == 0 {
            Ok(())
        } else {
            file.set_len(0)
        };
        emptied
            .and_then(|()| file.write_all(info.as_bytes()))
            .map_err(|e| Error::io("write", Path::new(&shown), e))?;
        return Ok(RunLock {
            dir,
            name,
            _file: file,
        });
    }
    Err(Error::conflict(format!(
        "could not take the lock {shown}: it keeps being replaced; is another program removing it?"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::journal::Journal;
    use crate::files::{Layout, LayoutKind};

    fn world(root: &Path) -> World {
        let l = Layout::new(LayoutKind::Kubelet, root.to_path_buf(), "/r/.k", None).unwrap();
        World::new(l, None, Journal::new("n", LayoutKind::Kubelet))
    }

    #[test]
    fn second_holder_is_refused_with_the_first_named_and_nothing_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let w = world(dir.path());
        let first = acquire(&w, "bootlet join").unwrap();
        let e = acquire(&w, "bootlet join").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert!(
            e.message().contains(&format!("pid {}", std::process::id())),
            "{e}"
        );
        let (_, name, shown) = location(&w).unwrap();
        assert!(Path::new(&shown).exists(), "{name}");
        drop(first);
        assert!(
            !Path::new(&shown).exists(),
            "the lock file is removed on release"
        );
        acquire(&w, "bootlet join").unwrap();
    }

    #[test]
    fn holder_text_is_sanitized() {
        assert_eq!(sanitized("pid 1\x1b[31m red\x07\n"), "pid 1?[31m red?");
        assert_eq!(sanitized(&"x".repeat(500)).len(), 200);
    }
}
