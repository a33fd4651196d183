//! The files a run sees and changes, real or dry-run, with each phase held to its manifest and
//! bootlet's own state held to its journal.
//!
//! In a dry-run every write lands in the dry-run directory under the same inside-root path, and
//! reads look there first and then fall through to the real root (read-only), so a dry-run of a
//! half-joined node predicts exactly what the real run would still do, and single dry-run phases
//! chain through one `--dry-run-dir`.
//!
//! State files (under the state directory) count only when the journal's ledger vouches for them:
//! a regular file, owned by the running user, private when it holds a secret, with the content
//! bootlet recorded. Their writes are recorded in the journal first and renamed into place only
//! after it ([`World::flush`]), so a crash never leaves a state file the journal does not know.
//!
//! Every write is staged under a temporary name and made visible at the next flush, which comes
//! when something must be durable (a key before its CSR is sent: [`World::write_durable`]) and at
//! the end of the run ([`World::finish`]); until then the run reads its own writes from memory. One
//! sync makes all of them (and the journal) durable, then they are put into place in order (the
//! journal; the files and links as the phases made them; the removals). The renames become durable
//! with the next sync ([`World::settle`]). docs/decisions.md ("One sync per phase" and "Staged work
//! waits for the next point that needs it") argues the promise.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod flushing;
mod reading;

use reading::{ChangingFiles, Lookups};

use super::journal::Journal;
use super::report::FileRecord;
use crate::error::{Error, Result};
use crate::files::confined::{self, Root, Staged};
use crate::files::durability::SyncMode;
use crate::files::{self, Layout};

/// The file side of a run.
#[derive(Debug)]
pub struct World {
    layout: Layout,
    dry_dir: Option<PathBuf>,
    /// The real root and the dry-run directory, each opened once for the run.
    real_root: Arc<Root>,
    dry_root: Option<Arc<Root>>,
    dry_removed: BTreeSet<String>,
    /// Memory of earlier runs and the ledger of bootlet's state files.
    pub journal: Journal,
    journal_dirty: bool,
    journal_retired: bool,
    phase: String,
    allowed_writes: Vec<(String, Option<u32>)>,
    allowed_removes: Vec<String>,
    records: Vec<FileRecord>,
    /// Directories whose renames, links or removals are visible but not yet known durable.
    unsettled: BTreeSet<String>,
    deferred: Vec<(String, Staged)>,
    /// The paths of `deferred` and `deferred_links` in the order the phase wrote and linked them,
    /// which is the order they appear in: a file that refers to a link (kubelet.conf to
    /// kubelet-client-current.pem) comes after it, as the link comes after the file it names.
    put_order: Vec<String>,
    /// What the staged files will hold and their modes, for this run's reads until they are put
    /// in place.
    deferred_content: BTreeMap<String, (Vec<u8>, u32)>,
    deferred_links: Vec<(String, String)>,
    deferred_removals: Vec<Removal>,
    /// Paths a deferred removal will remove: absent to this run's reads already.
    pending_removed: BTreeSet<String>,
    sync_mode: SyncMode,
    /// Which root held each path asked about since the world last changed the files (the checks
    /// of one plan ask about the same files many times); forgotten by every change.
    lookups: Lookups,
}

/// A removal made at the end of the phase, after its writes are in place.
#[derive(Debug)]
enum Removal {
    File(String),
    Dir(String),
}

fn dir_of(inside: &str) -> String {
    match inside.rfind('/') {
        Some(0) | None => "/".into(),
        Some(i) => inside[..i].to_string(),
    }
}

impl World {
    /// A world over `layout`'s root remembering `journal`; with `dry_dir`, a dry-run world
    /// writing there.
    pub fn new(layout: Layout, dry_dir: Option<PathBuf>, journal: Journal) -> World {
        World {
            real_root: Arc::new(Root::new(layout.root())),
            dry_root: dry_dir.as_deref().map(|d| Arc::new(Root::new(d))),
            layout,
            dry_dir,
            dry_removed: BTreeSet::new(),
            journal,
            journal_dirty: false,
            journal_retired: false,
            phase: String::new(),
            allowed_writes: Vec::new(),
            allowed_removes: Vec::new(),
            records: Vec::new(),
            unsettled: BTreeSet::new(),
            deferred: Vec::new(),
            put_order: Vec::new(),
            deferred_content: BTreeMap::new(),
            deferred_links: Vec::new(),
            deferred_removals: Vec::new(),
            pending_removed: BTreeSet::new(),
            sync_mode: SyncMode::from_env(),
            lookups: Default::default(),
        }
    }

    /// The root writes land under: the dry-run directory, or the real root.
    fn write_root(&self) -> Arc<Root> {
        self.dry_root.as_ref().unwrap_or(&self.real_root).clone()
    }

    /// Refuses a root whose layout directories run through a symlink (bootlet would write
    /// outside `--root`) or whose state directory another user owns or may write.
    pub fn check_confined(&self) -> Result<()> {
        let dirs = self.layout.directories();
        confined::check_dirs(&self.real_root, &dirs)?;
        if let Some(d) = &self.dry_root {
            confined::check_dirs(d, &dirs)?;
        }
        for var in ["state", "staging"] {
            let inside = self.layout.path(var);
            for root in [Some(&self.real_root), self.dry_root.as_ref()]
                .into_iter()
                .flatten()
            {
                let Some(meta) = confined::stat(root, inside)? else {
                    continue;
                };
                let why = if meta.uid != confined::euid() {
                    format!(
                        "owned by uid {}, not by the running user (uid {})",
                        meta.uid,
                        confined::euid()
                    )
                } else if meta.mode & 0o022 != 0 {
                    format!("mode {:04o} lets group or others write it", meta.mode)
                } else {
                    continue;
                };
                return Err(Error::conflict(format!(
                    "planted or changed outside bootlet: {} ({why}); remove it to start over",
                    files::host_path(root.path(), inside).display()
                )));
            }
        }
        Ok(())
    }

    /// The layout (of the real root).
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The dry-run directory, if any.
    pub fn dry_dir(&self) -> Option<&Path> {
        self.dry_dir.as_deref()
    }

    /// Whether this is a dry-run.
    pub fn is_dry_run(&self) -> bool {
        self.dry_dir.is_some()
    }

    /// Holds subsequent writes to `phase`'s declared files until the next call.
    pub fn enter_phase(
        &mut self,
        phase: &str,
        writes: Vec<(String, Option<u32>)>,
        removes: Vec<String>,
    ) {
        self.phase = phase.to_string();
        self.allowed_writes = writes;
        self.allowed_removes = removes;
    }

    /// Leaves the phase: nothing may be written until the next `enter_phase`.
    pub fn leave_phase(&mut self) -> Vec<FileRecord> {
        self.phase.clear();
        self.allowed_writes.clear();
        self.allowed_removes.clear();
        std::mem::take(&mut self.records)
    }

    /// Where a write of `inside` lands.
    pub fn write_host_path(&self, inside: &str) -> PathBuf {
        files::host_path(self.write_root().path(), inside)
    }

    fn check_write(&self, inside: &str, mode: Option<u32>) -> Result<()> {
        let ok = self
            .allowed_writes
            .iter()
            .any(|(pattern, m)| files::glob_match(pattern, inside) && *m == mode);
        if ok {
            return Ok(());
        }
        Err(Error::internal(format!(
            "phase {:?} tried to write {inside} (mode {}), which phases/{}.toml does not declare; this is a bug in bootlet",
            self.phase,
            mode.map(|m| format!("{m:04o}"))
                .unwrap_or_else(|| "link".into()),
            self.phase
        )))
    }

    /// Writes `contents` to `inside` atomically with `mode`, if the phase declared it. A state
    /// file is recorded in the journal and renamed into place at the next [`World::flush`].
    pub fn write(&mut self, inside: &str, contents: &[u8], mode: u32) -> Result<()> {
        let _changing = ChangingFiles::begin(&self.lookups);
        self.check_write(inside, Some(mode))?;
        let root = self.write_root();
        let sha256 = crate::pki::sha256_hex(contents);
        let staged = confined::stage_unsynced(&root, inside, contents, mode)?;
        if self.layout.is_tracked_state(inside) {
            self.journal.intend_file(inside, &sha256);
        } else {
            self.journal.record_file(inside, &sha256);
        }
        self.journal_dirty = true;
        self.abandon_deferred(inside);
        self.deferred.push((inside.to_string(), staged));
        self.put_order.push(inside.to_string());
        self.deferred_content
            .insert(inside.to_string(), (contents.to_vec(), mode));
        self.dry_removed.remove(inside);
        self.records.push(FileRecord {
            path: inside.to_string(),
            kind: "file".into(),
            mode: format!("{mode:04o}"),
            size: contents.len() as u64,
            sha256,
            target: None,
        });
        Ok(())
    }

    /// Drops a write or removal of `inside` staged earlier in this phase (a later one replaces it).
    fn abandon_deferred(&mut self, inside: &str) {
        if let Some(i) = self.deferred.iter().position(|(p, _)| p == inside) {
            self.deferred.remove(i).1.abandon();
        }
        self.deferred_content.remove(inside);
        self.deferred_links.retain(|(p, _)| p != inside);
        self.put_order.retain(|p| p != inside);
        self.deferred_removals
            .retain(|r| !matches!(r, Removal::File(p) if p == inside));
        self.pending_removed.remove(inside);
    }

    /// Writes unless `inside` already holds exactly `contents` with `mode`; returns whether it
    /// wrote. This is how a second run changes nothing (same inode, same mtime).
    pub fn write_if_changed(&mut self, inside: &str, contents: &[u8], mode: u32) -> Result<bool> {
        let same = self.mode_and_owner(inside).is_some_and(|(m, _)| m == mode)
            && self.is_regular_file(inside)
            && self.read(inside)?.as_deref() == Some(contents);
        if same {
            return Ok(false);
        }
        self.write(inside, contents, mode)?;
        Ok(true)
    }

    /// Narrows the mode of the existing file `inside` (a link at its end is not followed) to
    /// `mode`, as its declaration in the manifest says. In a dry-run the would-be file is written
    /// aside with that mode.
    pub fn repair_mode(&mut self, inside: &str, mode: u32) -> Result<()> {
        let _changing = ChangingFiles::begin(&self.lookups);
        self.check_write(inside, Some(mode))?;
        if self.is_dry_run() {
            let content = self.read(inside)?.unwrap_or_default();
            return self.write(inside, &content, mode);
        }
        confined::set_mode(&self.real_root, inside, mode)?;
        self.unsettled.insert(dir_of(inside));
        self.records.push(FileRecord {
            path: inside.to_string(),
            kind: "mode".into(),
            mode: format!("{mode:04o}"),
            size: 0,
            sha256: String::new(),
            target: None,
        });
        Ok(())
    }

    /// Points the symlink `inside` at `target` (a name in the same directory).
    pub fn link(&mut self, inside: &str, target: &str) -> Result<bool> {
        let _changing = ChangingFiles::begin(&self.lookups);
        self.check_write(inside, None)?;
        if self.read_link(inside).as_deref() == Some(target)
            && self.exists(&sibling(inside, target))
        {
            return Ok(false);
        }
        self.abandon_deferred(inside);
        self.deferred_links
            .push((inside.to_string(), target.to_string()));
        self.put_order.push(inside.to_string());
        self.journal.record_link(inside, target);
        self.journal_dirty = true;
        self.dry_removed.remove(inside);
        let content = self.read(&sibling(inside, target))?.unwrap_or_default();
        self.records.push(FileRecord {
            path: inside.to_string(),
            kind: "symlink".into(),
            mode: "link".into(),
            size: 0,
            sha256: crate::pki::sha256_hex(&content),
            target: Some(target.to_string()),
        });
        Ok(true)
    }

    /// Removes `inside` if present, if the phase declared it.
    pub fn remove(&mut self, inside: &str) -> Result<bool> {
        let _changing = ChangingFiles::begin(&self.lookups);
        if !self.may_remove(inside) {
            return Err(Error::internal(format!(
                "phase {:?} tried to remove {inside}, which phases/{}.toml does not declare; this is a bug in bootlet",
                self.phase, self.phase
            )));
        }
        if !self.exists(inside) {
            return Ok(false);
        }
        // The ledger forgets the file only once it is gone (`flush`): a journal that no longer
        // records a state file still on disk would make the next run distrust it.
        let forget_now = self.is_dry_run() && self.journal.files.contains_key(inside);
        if forget_now {
            self.journal.forget_file(inside);
            self.journal_dirty = true;
        }
        // Removals happen when the phase ends (`flush`), after its writes are in place: a run
        // stopped in between never leaves the old file gone and the new one not yet there. A
        // removal lost to a crash is redone by the next run.
        self.abandon_deferred(inside);
        if self.is_dry_run() {
            self.dry_removed.insert(inside.to_string());
            let root = self.write_root();
            confined::remove(&root, inside)?;
            self.record_removal(inside, "");
        } else {
            // Recorded in the report when it is done (`flush`), not when it is asked for.
            self.pending_removed.insert(inside.to_string());
            self.deferred_removals
                .push(Removal::File(inside.to_string()));
        }
        Ok(true)
    }

    /// Removes the journal itself, for good: nothing writes it again this run (`reset`).
    pub fn retire_journal(&mut self) -> Result<bool> {
        let _changing = ChangingFiles::begin(&self.lookups);
        // What earlier phases staged (reset's removals) is done first: a journal gone before
        // the files it vouches for would leave them distrusted.
        self.flush()?;
        let inside = self.layout.path("journal").to_string();
        self.journal_retired = true;
        if !self.exists(&inside) {
            return Ok(false);
        }
        let root = self.write_root();
        if self.is_dry_run() {
            self.dry_removed.insert(inside.clone());
            confined::remove(&root, &inside)?;
        } else if confined::remove(&root, &inside)? {
            self.unsettled.insert(dir_of(&inside));
        }
        self.record_removal(&inside, "");
        Ok(true)
    }

    /// Removes the directory `inside` if it is empty and the phase declared its removal; returns
    /// whether it did. A dry-run only records it.
    pub fn remove_empty_dir(&mut self, inside: &str) -> Result<bool> {
        let _changing = ChangingFiles::begin(&self.lookups);
        if !self.may_remove(inside) {
            return Err(Error::internal(format!(
                "phase {:?} tried to remove the directory {inside}, which its manifest does not declare; this is a bug in bootlet",
                self.phase
            )));
        }
        let Some(host) = self.read_host_path(inside) else {
            return Ok(false);
        };
        let empty = std::fs::read_dir(&host).is_ok_and(|mut d| {
            d.all(|e| {
                e.is_ok_and(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let entry = format!("{inside}/{name}");
                    self.dry_removed.contains(&entry) || self.pending_removed.contains(&entry)
                })
            })
        });
        if !empty {
            return Ok(false);
        }
        if !self.is_dry_run() {
            self.pending_removed.insert(inside.to_string());
            self.deferred_removals
                .push(Removal::Dir(inside.to_string()));
        } else {
            self.dry_removed.insert(inside.to_string());
            self.record_removal(inside, "dir");
        }
        Ok(true)
    }

    /// Whether the current phase declared the removal of `inside`.
    fn may_remove(&self, inside: &str) -> bool {
        self.allowed_removes
            .iter()
            .any(|p| files::glob_match(p, inside))
    }

    /// Records a removal in the phase's report (`mode` "dir" for a directory).
    pub(super) fn record_removal(&mut self, inside: &str, mode: &str) {
        self.records.push(FileRecord {
            path: inside.to_string(),
            kind: "removed".into(),
            mode: mode.into(),
            size: 0,
            sha256: String::new(),
            target: None,
        });
    }

    /// Removes temporary files an interrupted writer left in the layout's directories.
    pub fn remove_stale_temps(&self) {
        let _changing = ChangingFiles::begin(&self.lookups);
        let root = self.write_root();
        for d in self.layout.directories() {
            confined::remove_stale_temps(&root, &d);
        }
    }
}

/// `dir(inside)/name`.
pub fn sibling(inside: &str, name: &str) -> String {
    match inside.rfind('/') {
        Some(i) => format!("{}/{name}", &inside[..i]),
        None => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::LayoutKind;

    fn layout(root: &Path) -> Layout {
        Layout::new(
            LayoutKind::Kubelet,
            root.to_path_buf(),
            "/root/.krustlet",
            None,
        )
        .unwrap()
    }

    fn world(root: &Path, dry: Option<&Path>) -> World {
        let l = layout(root);
        World::new(
            l,
            dry.map(Path::to_path_buf),
            Journal::new("n", LayoutKind::Kubelet),
        )
    }

    #[test]
    fn undeclared_writes_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let mut w = world(root.path(), None);
        w.enter_phase("t", vec![("/etc/a.conf".into(), Some(0o600))], vec![]);
        w.write("/etc/a.conf", b"x", 0o600).unwrap();
        assert!(
            w.write("/etc/a.conf", b"x", 0o644).is_err(),
            "mode must match too"
        );
        let e = w.write("/etc/b.conf", b"x", 0o600).unwrap_err();
        assert!(e.message().contains("does not declare"));
        assert!(!root.path().join("etc/b.conf").exists());
        assert!(w.remove("/etc/a.conf").is_err());
    }

    #[test]
    fn dry_run_writes_aside_and_reads_through() {
        let root = tempfile::tempdir().unwrap();
        let dry = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("etc")).unwrap();
        std::fs::write(root.path().join("etc/old.conf"), "old").unwrap();
        let mut w = world(root.path(), Some(dry.path()));
        w.enter_phase(
            "t",
            vec![("/etc/*.conf".into(), Some(0o600))],
            vec!["/etc/*.conf".into()],
        );
        assert_eq!(w.read("/etc/old.conf").unwrap().unwrap(), b"old");
        w.write("/etc/new.conf", b"new", 0o600).unwrap();
        assert!(
            !dry.path().join("etc/new.conf").exists(),
            "staged until the phase ends"
        );
        assert_eq!(w.read("/etc/new.conf").unwrap().unwrap(), b"new");
        w.flush().unwrap();
        assert!(!root.path().join("etc/new.conf").exists());
        assert!(dry.path().join("etc/new.conf").exists());
        assert!(w.remove("/etc/old.conf").unwrap());
        assert!(
            root.path().join("etc/old.conf").exists(),
            "real root untouched"
        );
        assert!(
            w.read("/etc/old.conf").unwrap().is_none(),
            "but gone in the dry-run world"
        );
        assert_eq!(w.leave_phase().len(), 2);
    }

    #[test]
    fn state_files_need_the_journal_and_appear_after_it() {
        let root = tempfile::tempdir().unwrap();
        let mut w = world(root.path(), None);
        let token = "/var/lib/bootlet/bootstrap-token";
        w.enter_phase("t", vec![(token.into(), Some(0o600))], vec![]);
        w.write(token, b"abc", 0o600).unwrap();
        assert!(
            !root.path().join("var/lib/bootlet/bootstrap-token").exists(),
            "not before the journal"
        );
        assert_eq!(w.read(token).unwrap().unwrap(), b"abc");
        w.flush().unwrap();
        assert!(root.path().join("var/lib/bootlet/journal.toml").exists());
        assert_eq!(w.read(token).unwrap().unwrap(), b"abc");

        // The same bytes planted by hand: not recorded by a fresh journal.
        let fresh = world(root.path(), None);
        let e = fresh.read(token).unwrap_err();
        assert!(
            e.message().contains("planted or changed outside bootlet"),
            "{e}"
        );
        assert!(
            e.message().contains("the journal does not record it"),
            "{e}"
        );

        // Recorded, but made group-readable.
        let host = root.path().join("var/lib/bootlet/bootstrap-token");
        std::fs::set_permissions(&host, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        let e = w.read(token).unwrap_err();
        assert!(e.message().contains("mode 0644"), "{e}");
        std::fs::set_permissions(&host, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        std::fs::write(&host, "other").unwrap();
        assert!(
            w.read(token)
                .unwrap_err()
                .message()
                .contains("is not what bootlet wrote")
        );
    }

    #[test]
    fn staged_work_waits_across_phases_until_finish() {
        let root = tempfile::tempdir().unwrap();
        let mut w = world(root.path(), None);
        let conf = "/etc/kubernetes/a.conf";
        w.enter_phase("one", vec![(conf.into(), Some(0o600))], vec![]);
        w.write(conf, b"a", 0o600).unwrap();
        w.leave_phase();
        w.save_journal(false).unwrap();
        w.enter_phase("two", vec![], vec![]);
        assert_eq!(
            w.read(conf).unwrap().unwrap(),
            b"a",
            "the next phase reads it"
        );
        assert_eq!(w.mode_and_owner(conf).map(|(m, _)| m), Some(0o600));
        assert!(w.is_regular_file(conf));
        let host = root.path().join("etc/kubernetes/a.conf");
        assert!(!host.exists(), "not in place before a flush");
        w.leave_phase();
        w.finish().unwrap();
        assert_eq!(std::fs::read(&host).unwrap(), b"a");
        assert!(root.path().join("var/lib/bootlet/journal.toml").exists());
    }

    #[test]
    fn a_removed_state_file_leaves_the_ledger_in_the_same_flush() {
        let root = tempfile::tempdir().unwrap();
        let mut w = world(root.path(), None);
        let token = "/var/lib/bootlet/bootstrap-token";
        w.enter_phase("t", vec![(token.into(), Some(0o600))], vec![token.into()]);
        w.write(token, b"abc", 0o600).unwrap();
        w.flush().unwrap();
        let journal = root.path().join("var/lib/bootlet/journal.toml");
        assert!(std::fs::read_to_string(&journal).unwrap().contains(token));
        assert!(w.remove(token).unwrap());
        w.flush().unwrap();
        assert!(!root.path().join(&token[1..]).exists());
        assert!(
            !std::fs::read_to_string(&journal).unwrap().contains(token),
            "the journal on disk forgets the removed file"
        );
        assert!(!w.journal_dirty, "nothing left for another flush");
        let leftovers: Vec<_> = std::fs::read_dir(root.path().join("var/lib/bootlet"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".bootlet-tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
