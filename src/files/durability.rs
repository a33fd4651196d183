//! Making staged files and renames durable: one `syncfs(2)` per filesystem and sync point (the
//! default), or one fsync per file and directory (`BOOTLET_SYNC=per-file`).
//!
//! A `syncfs` makes durable everything written to its filesystem before it *started*, whoever wrote
//! it. So when many runs in one process wait to sync the same filesystem at once (the benchmarks'
//! storm; a fleet tool joining many roots), one call serves all of them: a caller that finds a sync
//! already under way waits for the next one, which starts after its writes and covers them, and
//! whoever starts that one starts it for everybody waiting. A lone run pays one uncontended lock.

use std::os::fd::OwnedFd;
use std::sync::{Condvar, Mutex};

use rustix::io::Errno;

use super::SYNCS;
use super::confined::{io_err, open_dir};
use crate::error::Result;

/// How staged files and renames are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// One `syncfs(2)` per filesystem and sync point (the default).
    Filesystem,
    /// One fsync per file and per directory (`BOOTLET_SYNC=per-file`): for a root whose filesystem
    /// other programs keep busy, where a `syncfs` would wait for their writeback too.
    PerFile,
}

impl SyncMode {
    /// The mode `BOOTLET_SYNC` asks for (`per-file`; anything else is the default).
    pub fn from_env() -> SyncMode {
        match std::env::var("BOOTLET_SYNC").as_deref() {
            Ok("per-file") => SyncMode::PerFile,
            _ => SyncMode::Filesystem,
        }
    }
}

/// Makes everything written to the filesystems holding `dirs` durable: file contents, renames,
/// links, removals and modes. One `syncfs(2)` per filesystem (usually one for the whole root)
/// instead of one fsync per file and per directory (docs/decisions.md, "One sync per phase").
pub fn sync_filesystems<'a>(dirs: impl IntoIterator<Item = &'a OwnedFd>) -> Result<()> {
    let mut seen = Vec::new();
    for dir in dirs {
        let dev = rustix::fs::fstat(dir)
            .map_err(|e| io_err("stat", "a directory under the root", e))?
            .st_dev;
        if seen.contains(&dev) {
            continue;
        }
        seen.push(dev);
        sync_filesystem(dir, dev).map_err(|e| io_err("sync the filesystem of", "the root", e))?;
    }
    Ok(())
}

/// Syncs the filesystems of the directories `inside_dirs` under `root` (see [`sync_filesystems`]);
/// directories that no longer exist are skipped (a removal made them go).
pub fn sync_dirs_filesystems(root: &super::confined::Root, inside_dirs: &[String]) -> Result<()> {
    let mut fds = Vec::new();
    for d in inside_dirs {
        let mut at = d.as_str();
        // A removed directory's parent holds the removal.
        loop {
            if let Some(fd) = open_dir(root, at, false)? {
                fds.push(fd);
                break;
            }
            match at.rfind('/') {
                Some(0) | None if at == "/" => break,
                Some(0) | None => at = "/",
                Some(i) => at = &at[..i],
            }
        }
    }
    sync_filesystems(fds.iter())
}

/// The syncs of one filesystem: how many were started, the last one that finished well, and
/// whether one is under way. Syncs of one filesystem run one at a time, so `finished` only grows.
#[derive(Debug, Clone, Copy)]
struct Syncs {
    dev: u64,
    started: u64,
    finished: u64,
    running: bool,
}

/// The syncs of every filesystem this process syncs, and the signal that one finished.
struct SyncGroup {
    filesystems: Mutex<Vec<Syncs>>,
    done: Condvar,
}

static GROUP: SyncGroup = SyncGroup::new();

/// Returns once a `syncfs` of `dir`'s filesystem (`dev`) that started after this call began has
/// finished (see the module comment).
fn sync_filesystem(dir: &OwnedFd, dev: u64) -> std::result::Result<(), Errno> {
    GROUP.sync(dev, || {
        SYNCS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        rustix::fs::syncfs(dir)
    })
}

impl SyncGroup {
    const fn new() -> SyncGroup {
        SyncGroup {
            filesystems: Mutex::new(Vec::new()),
            done: Condvar::new(),
        }
    }

    /// Returns once a `sync` of filesystem `dev` that started after this call began has finished:
    /// this caller's (`sync` is called at most once), or another caller's it waited for. A failed
    /// sync fails its caller; whoever waited for it starts another.
    fn sync(
        &self,
        dev: u64,
        sync: impl FnOnce() -> std::result::Result<(), Errno>,
    ) -> std::result::Result<(), Errno> {
        let mut all = self.filesystems.lock().unwrap_or_else(|e| e.into_inner());
        // A sync under way may have started before this caller's writes: only a later one covers them.
        let needed = syncs_of(&mut all, dev).started + 1;
        loop {
            let fs = syncs_of(&mut all, dev);
            if fs.finished >= needed {
                return Ok(());
            }
            if !fs.running {
                fs.running = true;
                fs.started += 1;
                let mine = fs.started;
                drop(all);
                let synced = sync();
                let mut all = self.filesystems.lock().unwrap_or_else(|e| e.into_inner());
                let fs = syncs_of(&mut all, dev);
                fs.running = false;
                if synced.is_ok() {
                    fs.finished = mine;
                }
                self.done.notify_all();
                return synced;
            }
            all = self.done.wait(all).unwrap_or_else(|e| e.into_inner());
        }
    }
}

fn syncs_of(all: &mut Vec<Syncs>, dev: u64) -> &mut Syncs {
    let i = match all.iter().position(|s| s.dev == dev) {
        Some(i) => i,
        None => {
            all.push(Syncs {
                dev,
                started: 0,
                finished: 0,
                running: false,
            });
            all.len() - 1
        }
    };
    &mut all[i]
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// 16 callers at once, each needing 3 syncs, of a filesystem whose sync takes 30 ms: every
    /// call returns only after a sync that started after it began has ended, and far fewer syncs
    /// run than were asked for.
    #[test]
    fn callers_at_once_share_syncs_and_each_is_covered_by_one_that_started_after_it() {
        let group = SyncGroup::new();
        let runs: Mutex<Vec<(Instant, Instant)>> = Mutex::new(Vec::new());
        let calls: Mutex<Vec<(Instant, Instant)>> = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..16 {
                s.spawn(|| {
                    for _ in 0..3 {
                        let called = Instant::now();
                        group
                            .sync(7, || {
                                let began = Instant::now();
                                std::thread::sleep(Duration::from_millis(30));
                                runs.lock().unwrap().push((began, Instant::now()));
                                Ok(())
                            })
                            .unwrap();
                        calls.lock().unwrap().push((called, Instant::now()));
                    }
                });
            }
        });
        let runs = runs.into_inner().unwrap();
        for (called, returned) in calls.into_inner().unwrap() {
            assert!(
                runs.iter().any(|(b, e)| *b >= called && *e <= returned),
                "a call returned without a sync that started after it"
            );
        }
        assert!(runs.len() <= 16, "{} syncs for 48 requests", runs.len());
    }

    #[test]
    fn a_failed_sync_fails_its_caller_and_the_next_caller_syncs_again() {
        let group = SyncGroup::new();
        assert_eq!(group.sync(1, || Err(Errno::IO)), Err(Errno::IO));
        let mut ran = false;
        group
            .sync(1, || {
                ran = true;
                Ok(())
            })
            .unwrap();
        assert!(ran, "a failed sync covers nobody");
        let fs = *syncs_of(&mut group.filesystems.lock().unwrap(), 1);
        assert!(!fs.running && fs.finished == 2 && fs.started == 2, "{fs:?}");
    }

    #[test]
    fn a_real_sync_of_a_directory_works() {
        let dir = tempfile::tempdir().unwrap();
        let flags = rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY;
        let fd = rustix::fs::open(dir.path(), flags, rustix::fs::Mode::empty()).unwrap();
        sync_filesystems([&fd, &fd]).unwrap();
    }
}
