//! File operations that cannot leave the root: every directory on the way to a target is opened
//! component by component with `O_NOFOLLOW | O_DIRECTORY`, and files are created, renamed, linked
//! and removed relative to that directory handle (`openat`, `renameat`, `symlinkat`, `unlinkat`).
//! A symlinked directory planted under the root (`etc -> /etc`, `var/lib/kubelet/pki -> /tmp/x`)
//! is therefore refused by name instead of being written through.
//!
//! Where the kernel can (Linux 5.6 and later), a directory that exists is opened with one
//! `openat2(RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH)` from the root instead: the same rule, one
//! system call instead of two per component. Anything it refuses (a link, a missing directory to
//! create, an old kernel) takes the component walk, which names the cause or does the creating.
//!
//! The one exception is `--root /`: there every path is inside the root by definition, and hosts
//! commonly move `/var/lib/kubelet` to a bigger disk with a link, so links owned by root (or by the
//! running user) are followed; links owned by anyone else still are not.

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::error::{Error, Result};

use super::{PRIVATE_DIR_MODE, SYNCS, TEMP_PREFIX};

/// What `lstat` says about a file under the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Regular file (not a link, directory, device or fifo).
    pub is_file: bool,
    /// A symbolic link.
    pub is_symlink: bool,
    /// Owner.
    pub uid: u32,
    /// Permission bits.
    pub mode: u32,
}

impl Meta {
    fn of(st: &rustix::fs::Stat) -> Meta {
        let kind = FileType::from_raw_mode(st.st_mode);
        Meta {
            is_file: kind == FileType::RegularFile,
            is_symlink: kind == FileType::Symlink,
            uid: st.st_uid,
            mode: st.st_mode & 0o7777,
        }
    }
}

/// The effective user id of this process (asked once: bootlet never changes its identity, and a
/// run compares every state file's owner with it).
pub fn euid() -> u32 {
    static EUID: OnceLock<u32> = OnceLock::new();
    *EUID.get_or_init(|| rustix::process::geteuid().as_raw())
}

/// A root the functions here work beneath: its path (for messages and the `--root /` rule) and,
/// once opened, its descriptor, which every later call starts from. One run opens its root once
/// instead of walking the root's own path again for every file it reads or writes; the root is
/// the operator's choice, so holding it open follows it wherever it is, as the path did.
///
/// A root found missing by a read is remembered as missing for later reads (a fresh node's run
/// asked about thirty times, each a failed walk of the root's whole path); a write still opens or
/// creates it. A run holds its root's lock before its World first looks, so no other bootlet run
/// creates the root meanwhile, and anything else that did would have written nothing the run may
/// trust: "missing" is the answer the run's checks treat as "not done".
pub struct Root {
    path: PathBuf,
    fd: OnceLock<OwnedFd>,
    missing: AtomicBool,
}

impl std::fmt::Debug for Root {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Root({})", self.path.display())
    }
}

impl Root {
    /// The root at `path`, opened on first use.
    pub fn new(path: impl Into<PathBuf>) -> Root {
        Root {
            path: path.into(),
            fd: OnceLock::new(),
            missing: AtomicBool::new(false),
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The root's descriptor; with `create`, a missing root is made. Without it, a root once
    /// found missing is `None` without looking again.
    fn fd(&self, create: bool) -> Result<Option<BorrowedFd<'_>>> {
        if let Some(fd) = self.fd.get() {
            return Ok(Some(fd.as_fd()));
        }
        if !create && self.missing.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let Some(fd) = open_root(&self.path, create)? else {
            self.missing.store(true, Ordering::Relaxed);
            return Ok(None);
        };
        // Two threads opening at once keep one descriptor; the other is closed.
        let _ = self.fd.set(fd);
        Ok(self.fd.get().map(|fd| fd.as_fd()))
    }
}

pub(super) fn io_err(action: &str, shown: &str, e: Errno) -> Error {
    Error::io(action, Path::new(shown), std::io::Error::from(e))
}

/// `dir/name` for messages.
fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() || dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

fn components(inside: &str) -> impl Iterator<Item = &str> {
    inside.split('/').filter(|c| !c.is_empty() && *c != ".")
}

/// Splits an inside-root file path into its directory and file name.
fn split(inside: &str) -> Result<(&str, &str)> {
    let trimmed = inside.trim_end_matches('/');
    match trimmed.rfind('/') {
        Some(i) if i + 1 < trimmed.len() => Ok((&trimmed[..i], &trimmed[i + 1..])),
        None if !trimmed.is_empty() => Ok(("", trimmed)),
        _ => Err(Error::internal(format!("{inside:?} names no file"))),
    }
}

fn open_root(root: &Path, create: bool) -> Result<Option<OwnedFd>> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    match rustix::fs::open(root, flags, Mode::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT) if create => {
            // The root itself is the operator's choice: links above and at it are theirs.
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode_private()
                .create(root)
                .map_err(|e| Error::io("create directory", root, e))?;
            rustix::fs::open(root, flags, Mode::empty())
                .map(Some)
                .map_err(|e| io_err("open", &root.display().to_string(), e))
        }
        Err(Errno::NOENT) => Ok(None),
        Err(Errno::NOTDIR) => Err(Error::conflict(format!(
            "the root {} is not a directory; choose another --root",
            root.display()
        ))),
        Err(e) => Err(io_err("open", &root.display().to_string(), e)),
    }
}

trait PrivateDirBuilder {
    fn mode_private(&mut self) -> &mut Self;
}

impl PrivateDirBuilder for std::fs::DirBuilder {
    fn mode_private(&mut self) -> &mut Self {
        std::os::unix::fs::DirBuilderExt::mode(self, PRIVATE_DIR_MODE)
    }
}

fn refuse_link(root: &Path, dir: &impl AsFd, name: &str, shown: &str) -> Error {
    let target = rustix::fs::readlinkat(dir, name, Vec::new())
        .map(|t| t.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "?".into());
    Error::conflict(format!(
        "{shown} is a symbolic link (to {target}): bootlet writes only inside --root {} and follows no link on the way; replace the link with a real directory, or choose another --root",
        root.display()
    ))
}

/// Opens the directory `inside_dir` under `root` without following links (see the module
/// comment for `--root /`). With `create`, missing directories are made 0700; without it, a
/// missing directory is `None`.
pub fn open_dir(root: &Root, inside_dir: &str, create: bool) -> Result<Option<OwnedFd>> {
    let Some(base) = root.fd(create)? else {
        return Ok(None);
    };
    match open_beneath(base, inside_dir, OFlags::RDONLY | OFlags::DIRECTORY) {
        Beneath::Opened(dir) => return Ok(Some(dir)),
        Beneath::Absent if !create => return Ok(None),
        Beneath::Absent | Beneath::Walk => {}
    }
    let admin_links_ok = root.path() == Path::new("/");
    let mut shown = String::new();
    // `None` while still at the root itself.
    let mut walked: Option<OwnedFd> = None;
    for name in components(inside_dir) {
        if name == ".." {
            return Err(Error::internal(format!(
                "{inside_dir:?} climbs out of the root; this is a bug in bootlet"
            )));
        }
        shown = join(&shown, name);
        let fd = walked.as_ref().map_or(base, |f| f.as_fd());
        let nofollow = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let next = match rustix::fs::openat(fd, name, nofollow, Mode::empty()) {
            Ok(next) => next,
            Err(Errno::NOENT) if create => {
                match rustix::fs::mkdirat(fd, name, Mode::from_raw_mode(PRIVATE_DIR_MODE)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(io_err("create directory", &shown, e)),
                }
                let next = rustix::fs::openat(fd, name, nofollow, Mode::empty())
                    .map_err(|e| io_err("open directory", &shown, e))?;
                // The umask may have narrowed the mode; a directory bootlet made is exactly 0700.
                rustix::fs::fchmod(&next, Mode::from_raw_mode(PRIVATE_DIR_MODE))
                    .map_err(|e| io_err("set mode of", &shown, e))?;
                next
            }
            Err(Errno::NOENT) => return Ok(None),
            Err(Errno::LOOP) | Err(Errno::NOTDIR) => {
                let st = rustix::fs::statat(fd, name, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| io_err("inspect", &shown, e))?;
                let meta = Meta::of(&st);
                if !meta.is_symlink {
                    return Err(Error::conflict(format!(
                        "{shown} exists but is not a directory; move it away"
                    )));
                }
                if !(admin_links_ok && (meta.uid == 0 || meta.uid == euid())) {
                    return Err(refuse_link(root.path(), &fd, name, &shown));
                }
                let follow = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
                rustix::fs::openat(fd, name, follow, Mode::empty())
                    .map_err(|e| io_err("open directory", &shown, e))?
            }
            Err(e) => return Err(io_err("open directory", &shown, e)),
        };
        walked = Some(next);
    }
    match walked {
        Some(dir) => Ok(Some(dir)),
        None => rustix::io::fcntl_dupfd_cloexec(base, 0)
            .map(Some)
            .map_err(|e| io_err("open", &root.path().display().to_string(), e)),
    }
}

/// What resolving a path in one system call found.
enum Beneath {
    Opened(OwnedFd),
    /// It, or a directory on its way, does not exist (and nothing before it is a link).
    Absent,
    /// Take the component walk: a link on the way (or at the end), `..`, or no `openat2` here.
    Walk,
}

/// Opens `inside` under `root_fd` with `flags`, links refused by the kernel on every component,
/// the last one included.
fn open_beneath(root_fd: BorrowedFd<'_>, inside: &str, flags: OFlags) -> Beneath {
    let relative = inside.trim_start_matches('/');
    if relative.is_empty() || components(relative).any(|c| c == "..") {
        return Beneath::Walk;
    }
    let resolve = ResolveFlags::NO_SYMLINKS | ResolveFlags::BENEATH;
    match rustix::fs::openat2(
        root_fd,
        relative,
        flags | OFlags::CLOEXEC,
        Mode::empty(),
        resolve,
    ) {
        Ok(fd) => Beneath::Opened(fd),
        Err(Errno::NOENT) => Beneath::Absent,
        Err(_) => Beneath::Walk,
    }
}

/// Checks that none of `inside_dirs` (as far as they exist) runs through a symlinked directory:
/// the preflight view of [`open_dir`], so that a planted link is reported before any phase reads
/// through it.
pub fn check_dirs(root: &Root, inside_dirs: &[String]) -> Result<()> {
    for d in inside_dirs {
        open_dir(root, d, false)?;
    }
    Ok(())
}

/// A file written to a temporary name beside its target, not yet renamed over it:
/// [`Staged::commit`] makes it visible. [`stage`] has made it durable already; [`stage_unsynced`]
/// leaves that to the caller ([`super::durability::sync_filesystems`] before the commit), which is how the World makes
/// a whole phase's files durable with one sync.
#[derive(Debug)]
pub struct Staged {
    dir: OwnedFd,
    temp: String,
    name: String,
    shown: String,
}

impl Staged {
    /// Renames the temporary file over the target (the directory is synced later by the caller).
    pub fn commit(self) -> Result<()> {
        rustix::fs::renameat(&self.dir, self.temp.as_str(), &self.dir, self.name.as_str()).map_err(
            |e| match e {
                Errno::ISDIR | Errno::NOTEMPTY => Error::conflict(format!(
                    "{} is a directory where bootlet keeps a file; move it away",
                    self.shown
                )),
                e => io_err("rename into place", &self.shown, e),
            },
        )
    }

    /// The directory the file is staged in.
    pub fn dir(&self) -> &OwnedFd {
        &self.dir
    }

    /// fsyncs the staged file (for [`SyncMode::PerFile`]).
    pub fn sync(&self) -> Result<()> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.dir, self.temp.as_str(), flags, Mode::empty())
            .map_err(|e| io_err("open", &self.shown, e))?;
        SYNCS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        rustix::fs::fsync(&fd).map_err(|e| io_err("fsync", &self.shown, e))
    }

    /// Removes the temporary file (a write that will not be committed).
    pub fn abandon(self) {
        let _ = rustix::fs::unlinkat(&self.dir, self.temp.as_str(), AtFlags::empty());
    }
}

fn temp_name(name: &str, n: u32) -> String {
    static PID: OnceLock<u32> = OnceLock::new();
    format!(
        "{TEMP_PREFIX}{name}-{}-{n}",
        PID.get_or_init(std::process::id)
    )
}

/// Writes `contents` with exactly `mode` to a temporary file beside `inside` and fsyncs it.
/// The mode is set before any byte is written, so a key is never readable by others.
pub fn stage(root: &Root, inside: &str, contents: &[u8], mode: u32) -> Result<Staged> {
    stage_with(root, inside, contents, mode, true)
}

/// Like [`stage`], without the fsync: the caller must make the file durable (with
/// [`super::durability::sync_filesystems`]) before it commits it.
pub fn stage_unsynced(root: &Root, inside: &str, contents: &[u8], mode: u32) -> Result<Staged> {
    stage_with(root, inside, contents, mode, false)
}

fn stage_with(root: &Root, inside: &str, contents: &[u8], mode: u32, sync: bool) -> Result<Staged> {
    let (dir_inside, name) = split(inside)?;
    let dir = open_dir(root, dir_inside, true)?.expect("created");
    let mut n = 0;
    let (fd, temp) = loop {
        let temp = temp_name(name, n);
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match rustix::fs::openat(
            &dir,
            temp.as_str(),
            flags,
            Mode::from_raw_mode(mode & 0o600),
        ) {
            Ok(fd) => break (fd, temp),
            Err(Errno::EXIST) if n < 100 => n += 1,
            Err(e) => return Err(io_err("create a temporary file beside", inside, e)),
        }
    };
    let staged = Staged {
        dir,
        temp,
        name: name.to_string(),
        shown: inside.to_string(),
    };
    let written = (|| {
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))
            .map_err(|e| io_err("set mode of", inside, e))?;
        let mut file = std::fs::File::from(fd);
        file.write_all(contents)
            .map_err(|e| Error::io("write", Path::new(inside), e))?;
        if !sync {
            return Ok(());
        }
        SYNCS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        file.sync_all()
            .map_err(|e| Error::io("fsync", Path::new(inside), e))
    })();
    match written {
        Ok(()) => Ok(staged),
        Err(e) => {
            staged.abandon();
            Err(e)
        }
    }
}

/// Writes `inside` atomically (temporary file, fsync, rename); the caller syncs the directory.
pub fn write(root: &Root, inside: &str, contents: &[u8], mode: u32) -> Result<()> {
    stage(root, inside, contents, mode)?.commit()
}

/// Points the symlink `inside` at `target` (a name in the same directory) by renaming a new link
/// over the old one, unlike the kubelet's remove-then-rename (certificate_store.go
/// `updateSymlink`), which leaves a moment with no `-current.pem` at all.
pub fn symlink(root: &Root, inside: &str, target: &str) -> Result<()> {
    let (dir_inside, name) = split(inside)?;
    let dir = open_dir(root, dir_inside, true)?.expect("created");
    match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if !Meta::of(&st).is_symlink => {
            return Err(Error::conflict(format!(
                "{inside} is a regular file where bootlet keeps a symlink; move it away"
            )));
        }
        _ => {}
    }
    let temp = temp_name(name, 0);
    let _ = rustix::fs::unlinkat(&dir, temp.as_str(), AtFlags::empty());
    rustix::fs::symlinkat(target, &dir, temp.as_str())
        .map_err(|e| io_err("create symlink", inside, e))?;
    rustix::fs::renameat(&dir, temp.as_str(), &dir, name)
        .map_err(|e| io_err("rename symlink into place", inside, e))
}

/// Removes the file or link `inside` if present; returns whether it did. The caller syncs.
pub fn remove(root: &Root, inside: &str) -> Result<bool> {
    let (dir_inside, name) = split(inside)?;
    let Some(dir) = open_dir(root, dir_inside, false)? else {
        return Ok(false);
    };
    match rustix::fs::unlinkat(&dir, name, AtFlags::empty()) {
        Ok(()) => Ok(true),
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(io_err("remove", inside, e)),
    }
}

/// Removes the empty directory `inside` (not following a link); absent is fine.
pub fn remove_dir(root: &Root, inside: &str) -> Result<()> {
    let (dir_inside, name) = split(inside)?;
    let Some(dir) = open_dir(root, dir_inside, false)? else {
        return Ok(());
    };
    match rustix::fs::unlinkat(&dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(io_err("remove directory", inside, e)),
    }
}

/// fsyncs the directory `inside_dir`, making renames and removals in it durable.
pub fn sync_dir(root: &Root, inside_dir: &str) -> Result<()> {
    let Some(dir) = open_dir(root, inside_dir, false)? else {
        return Ok(());
    };
    SYNCS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    rustix::fs::fsync(&dir).map_err(|e| io_err("fsync directory", inside_dir, e))
}

/// `lstat` of `inside`, `None` when absent.
pub fn stat(root: &Root, inside: &str) -> Result<Option<Meta>> {
    let (dir_inside, name) = split(inside)?;
    let Some(dir) = open_dir(root, dir_inside, false)? else {
        return Ok(None);
    };
    match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(Meta::of(&st))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(io_err("inspect", inside, e)),
    }
}

/// Whether anything (a link included, not followed) is at `inside`: `lstat` of the path under
/// the root, starting from the root's descriptor instead of walking the root's own path.
pub fn exists_at(root: &Root, inside: &str) -> bool {
    let Ok(Some(base)) = root.fd(false) else {
        return false;
    };
    let relative = inside.trim_start_matches('/');
    if relative.is_empty() {
        return true;
    }
    rustix::fs::statat(base, relative, AtFlags::SYMLINK_NOFOLLOW).is_ok()
}

/// Reads `inside` without following a link at its end; a link or special file comes back with
/// no content and its [`Meta`] for the caller to refuse.
pub fn read_nofollow(root: &Root, inside: &str) -> Result<Option<(Vec<u8>, Meta)>> {
    let Some(base) = root.fd(false)? else {
        return Ok(None);
    };
    // Not following a link at the end is the kernel's rule here (`RESOLVE_NO_SYMLINKS`) and
    // the walk's `O_NOFOLLOW` below.
    let flags = OFlags::RDONLY | OFlags::NONBLOCK;
    let fd = match open_beneath(base, inside, flags) {
        Beneath::Opened(fd) => fd,
        Beneath::Absent => return Ok(None),
        Beneath::Walk => match open_file_walking(root, inside)? {
            Walked::Opened(fd) => fd,
            Walked::Absent => return Ok(None),
            Walked::NotFollowed(meta) => return Ok(Some((Vec::new(), meta))),
        },
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| io_err("inspect", inside, e))?;
    let meta = Meta::of(&st);
    if !meta.is_file {
        return Ok(Some((Vec::new(), meta)));
    }
    let size = usize::try_from(st.st_size).unwrap_or(0);
    let bytes = read_sized(&fd, size).map_err(|e| io_err("read", inside, e))?;
    Ok(Some((bytes, meta)))
}

/// What the component walk found at a file's path.
enum Walked {
    Opened(OwnedFd),
    Absent,
    /// A link (not followed) or something that cannot be opened as a file: its `lstat`.
    NotFollowed(Meta),
}

/// Opens `inside` through [`open_dir`] (which names a planted directory link or follows an
/// admin's link under `--root /`), not following a link at its end.
fn open_file_walking(root: &Root, inside: &str) -> Result<Walked> {
    let (dir_inside, name) = split(inside)?;
    let Some(dir) = open_dir(root, dir_inside, false)? else {
        return Ok(Walked::Absent);
    };
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    match rustix::fs::openat(&dir, name, flags, Mode::empty()) {
        Ok(fd) => Ok(Walked::Opened(fd)),
        Err(Errno::NOENT) => Ok(Walked::Absent),
        Err(Errno::LOOP) => {
            let st = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| io_err("inspect", inside, e))?;
            Ok(Walked::NotFollowed(Meta::of(&st)))
        }
        Err(e) => Err(io_err("open", inside, e)),
    }
}

/// Reads all of `fd`, whose `fstat` said `size` bytes: one read for the content and one that
/// finds the end (std's `read_to_end` asks the size again, and the position, first).
fn read_sized(fd: &OwnedFd, size: usize) -> std::result::Result<Vec<u8>, Errno> {
    let mut buf = vec![0u8; size + 1];
    let mut filled = 0;
    loop {
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
        match rustix::io::read(fd, &mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

/// Sets the mode of the regular file `inside` (not following a link at its end).
pub fn set_mode(root: &Root, inside: &str, mode: u32) -> Result<()> {
    let (dir_inside, name) = split(inside)?;
    let dir = open_dir(root, dir_inside, false)?
        .ok_or_else(|| Error::conflict(format!("{inside} vanished while bootlet repaired it")))?;
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(&dir, name, flags, Mode::empty())
        .map_err(|e| io_err("open", inside, e))?;
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(|e| io_err("set mode of", inside, e))
}

/// Removes temporary files an interrupted writer left in `inside_dir` (they never sit at a
/// target path).
pub fn remove_stale_temps(root: &Root, inside_dir: &str) {
    let Ok(Some(dir)) = open_dir(root, inside_dir, false) else {
        return;
    };
    let Ok(entries) = rustix::fs::Dir::read_from(&dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(TEMP_PREFIX) {
            let _ = rustix::fs::unlinkat(&dir, name.as_str(), AtFlags::empty());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(p: &Path) -> Root {
        Root::new(p)
    }

    #[test]
    fn a_missing_root_is_remembered_for_reads_and_created_by_a_write() {
        let parent = tempfile::tempdir().unwrap();
        let path = parent.path().join("node");
        let root = at(&path);
        assert!(!exists_at(&root, "/f"));
        // Created behind the Root's back (no bootlet run does this while it holds the lock):
        // reads keep the answer they had.
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("f"), b"planted").unwrap();
        assert!(!exists_at(&root, "/f"));
        assert!(read_nofollow(&root, "/f").unwrap().is_none());
        // A write opens the root that is there, and reads see it from then on.
        write(&root, "/g", b"mine", 0o600).unwrap();
        assert_eq!(std::fs::read(path.join("g")).unwrap(), b"mine");
        assert!(exists_at(&root, "/f"));
        assert_eq!(read_nofollow(&root, "/g").unwrap().unwrap().0, b"mine");
    }

    #[test]
    fn writes_land_inside_and_links_on_the_way_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        write(&at(root.path()), "/a/b/key.pem", b"one", 0o600).unwrap();
        assert_eq!(
            std::fs::read(root.path().join("a/b/key.pem")).unwrap(),
            b"one"
        );
        assert_eq!(
            std::fs::metadata(root.path().join("a/b"))
                .unwrap()
                .permissions(),
            std::os::unix::fs::PermissionsExt::from_mode(0o40700)
        );
        std::os::unix::fs::symlink(outside.path(), root.path().join("a/evil")).unwrap();
        let e = write(&at(root.path()), "/a/evil/key.pem", b"x", 0o600).unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::Conflict);
        assert!(e.message().contains("/a/evil is a symbolic link"), "{e}");
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
        assert!(check_dirs(&at(root.path()), &["/a/evil/x".into()]).is_err());
        check_dirs(&at(root.path()), &["/a/b".into(), "/nothing/here".into()]).unwrap();
    }

    #[test]
    fn under_root_slash_links_owned_by_root_are_followed() {
        // /proc/self is a link owned by root: fine when the root is / (it cannot lead outside),
        // refused under any other root.
        if std::fs::symlink_metadata("/proc/self")
            .is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        {
            assert!(
                open_dir(&at(Path::new("/")), "/proc/self", false)
                    .unwrap()
                    .is_some()
            );
        }
        let root = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/proc", root.path().join("p")).unwrap();
        assert!(open_dir(&at(root.path()), "/p", false).is_err());
    }

    #[test]
    fn reads_open_in_one_call_and_take_the_walk_for_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = at(dir.path());
        let big = vec![7u8; 70_000];
        write(&root, "/a/b/big", &big, 0o600).unwrap();
        let (bytes, meta) = read_nofollow(&root, "/a/b/big").unwrap().unwrap();
        assert_eq!(bytes, big);
        assert!(meta.is_file && meta.mode == 0o600 && meta.uid == euid());
        write(&root, "/a/empty", b"", 0o644).unwrap();
        assert_eq!(read_nofollow(&root, "/a/empty").unwrap().unwrap().0, b"");
        assert!(read_nofollow(&root, "/a/none").unwrap().is_none());
        assert!(read_nofollow(&root, "/no/such/dir/f").unwrap().is_none());
        // A directory where a file is expected: no content, and a Meta that says so.
        let (bytes, meta) = read_nofollow(&root, "/a/b").unwrap().unwrap();
        assert!(bytes.is_empty() && !meta.is_file && !meta.is_symlink);
        // A directory link on the way is named, not read through.
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("f"), "outside").unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("a/evil")).unwrap();
        let e = read_nofollow(&root, "/a/evil/f").unwrap_err();
        assert!(e.message().contains("/a/evil is a symbolic link"), "{e}");
        // Under `--root /` a root-owned link on the way is followed (the walk), as for writes.
        if std::fs::symlink_metadata("/proc/self")
            .is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        {
            let (bytes, meta) = read_nofollow(&at(Path::new("/")), "/proc/self/comm")
                .unwrap()
                .unwrap();
            assert!(meta.is_file && !bytes.is_empty());
        }
    }

    #[test]
    fn a_link_at_the_target_is_replaced_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let victim = root.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::os::unix::fs::symlink(&victim, root.path().join("t")).unwrap();
        let (bytes, meta) = read_nofollow(&at(root.path()), "/t").unwrap().unwrap();
        assert!(meta.is_symlink && bytes.is_empty());
        write(&at(root.path()), "/t", b"new", 0o644).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        assert_eq!(std::fs::read(root.path().join("t")).unwrap(), b"new");
    }

    #[test]
    fn symlinks_swap_and_refuse_regular_files() {
        let root = tempfile::tempdir().unwrap();
        symlink(&at(root.path()), "/cur.pem", "a.pem").unwrap();
        symlink(&at(root.path()), "/cur.pem", "b.pem").unwrap();
        assert_eq!(
            std::fs::read_link(root.path().join("cur.pem")).unwrap(),
            Path::new("b.pem")
        );
        write(&at(root.path()), "/plain.pem", b"x", 0o600).unwrap();
        assert!(symlink(&at(root.path()), "/plain.pem", "b.pem").is_err());
        assert!(remove(&at(root.path()), "/cur.pem").unwrap());
        assert!(!remove(&at(root.path()), "/cur.pem").unwrap());
        assert!(!remove(&at(root.path()), "/no/such/dir/file").unwrap());
    }

    #[test]
    fn staged_writes_are_invisible_until_committed() {
        let root = tempfile::tempdir().unwrap();
        let s = stage(&at(root.path()), "/d/f", b"v", 0o600).unwrap();
        assert!(!root.path().join("d/f").exists());
        s.commit().unwrap();
        assert_eq!(std::fs::read(root.path().join("d/f")).unwrap(), b"v");
        stage(&at(root.path()), "/d/g", b"v", 0o600)
            .unwrap()
            .abandon();
        let names: Vec<_> = std::fs::read_dir(root.path().join("d"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["f"]);
    }
}
