//! The files a run sees and changes, real or dry-run, with each phase held to its manifest.
//!
//! In a dry-run every write lands in the dry-run directory under the same inside-root path, and
//! reads look there first and then fall through to the real root (read-only), so a dry-run of a
//! half-joined node predicts exactly what the real run would still do, and single dry-run phases
//! chain through one `--dry-run-dir`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::report::FileRecord;
use crate::error::{Error, Result};
use crate::files::{self, Layout};

/// The file side of a run.
#[derive(Debug)]
pub struct World {
    layout: Layout,
    dry_dir: Option<PathBuf>,
    dry_removed: BTreeSet<String>,
    phase: String,
    allowed_writes: Vec<(String, Option<u32>)>,
    allowed_removes: Vec<String>,
    records: Vec<FileRecord>,
    pending_syncs: BTreeSet<PathBuf>,
}

impl World {
    /// A world over `layout`'s root; with `dry_dir`, a dry-run world writing there.
    pub fn new(layout: Layout, dry_dir: Option<PathBuf>) -> World {
        World {
            layout,
            dry_dir,
            dry_removed: BTreeSet::new(),
            phase: String::new(),
            allowed_writes: Vec::new(),
            allowed_removes: Vec::new(),
            records: Vec::new(),
            pending_syncs: BTreeSet::new(),
        }
    }

    /// Makes this phase's writes, links and removals durable: one fsync per directory touched.
    /// Called when a phase ends, and by a phase that must order two batches (install, then remove
    /// the staged copies).
    pub fn flush(&mut self) -> Result<()> {
        let dirs = std::mem::take(&mut self.pending_syncs);
        files::blocking(|| dirs.iter().try_for_each(|d| files::sync_directory(d)))
    }

    /// Writes like [`World::write`] and makes it durable before returning, for a file that must be
    /// on disk before the phase acts on it (a key, before its CSR is sent).
    pub fn write_durable(&mut self, inside: &str, contents: &[u8], mode: u32) -> Result<()> {
        self.write(inside, contents, mode)?;
        self.flush()
    }

    /// Writes bootlet's own state (the journal), outside any phase's declarations; durable now, or
    /// with the next [`World::flush`].
    pub fn write_state(
        &mut self,
        inside: &str,
        contents: &[u8],
        mode: u32,
        durable_now: bool,
    ) -> Result<()> {
        let host = self.write_host_path(inside);
        files::blocking(|| files::write_atomic_dir_unsynced(&host, contents, mode))?;
        if let Some(parent) = host.parent() {
            self.pending_syncs.insert(parent.to_path_buf());
        }
        if durable_now { self.flush() } else { Ok(()) }
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
        match &self.dry_dir {
            Some(d) => files::host_path(d, inside),
            None => self.layout.host(inside),
        }
    }

    /// Where `inside` is read from, or `None` if it does not exist in this world.
    pub fn read_host_path(&self, inside: &str) -> Option<PathBuf> {
        if let Some(d) = &self.dry_dir {
            if self.dry_removed.contains(inside) {
                return None;
            }
            let p = files::host_path(d, inside);
            if p.symlink_metadata().is_ok() {
                return Some(p);
            }
        }
        let p = self.layout.host(inside);
        p.symlink_metadata().is_ok().then_some(p)
    }

    /// Reads `inside` (following symlinks), `None` if absent.
    pub fn read(&self, inside: &str) -> Result<Option<Vec<u8>>> {
        match self.read_host_path(inside) {
            Some(p) => files::read_optional(&p),
            None => Ok(None),
        }
    }

    /// Reads `inside` as UTF-8 text; non-UTF-8 content counts as invalid input.
    pub fn read_string(&self, inside: &str) -> Result<Option<String>> {
        match self.read(inside)? {
            Some(b) => String::from_utf8(b)
                .map(Some)
                .map_err(|_| Error::invalid(format!("{inside} is not text"))),
            None => Ok(None),
        }
    }

    /// The target of the symlink `inside`, if it is one.
    pub fn read_link(&self, inside: &str) -> Option<String> {
        let p = self.read_host_path(inside)?;
        std::fs::read_link(p)
            .ok()
            .map(|t| t.to_string_lossy().into_owned())
    }

    /// Whether `inside` exists (as anything).
    pub fn exists(&self, inside: &str) -> bool {
        self.read_host_path(inside).is_some()
    }

    /// File names in the directory `inside` (both worlds merged in a dry-run).
    pub fn list(&self, inside: &str) -> Vec<String> {
        let mut names = BTreeSet::new();
        let mut dirs = vec![self.layout.host(inside)];
        if let Some(d) = &self.dry_dir {
            dirs.push(files::host_path(d, inside));
        }
        for dir in dirs {
            if let Ok(rd) = std::fs::read_dir(dir) {
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let full = format!("{}/{name}", inside.trim_end_matches('/'));
                    if !name.starts_with(files::TEMP_PREFIX) && !self.dry_removed.contains(&full) {
                        names.insert(name);
                    }
                }
            }
        }
        names.into_iter().collect()
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

    /// Writes `contents` to `inside` atomically with `mode`, if the phase declared it.
    pub fn write(&mut self, inside: &str, contents: &[u8], mode: u32) -> Result<()> {
        self.check_write(inside, Some(mode))?;
        let host = self.write_host_path(inside);
        files::blocking(|| files::write_atomic_dir_unsynced(&host, contents, mode))?;
        if let Some(parent) = host.parent() {
            self.pending_syncs.insert(parent.to_path_buf());
        }
        self.dry_removed.remove(inside);
        self.records.push(FileRecord {
            path: inside.to_string(),
            kind: "file".into(),
            mode: format!("{mode:04o}"),
            size: contents.len() as u64,
            sha256: crate::pki::sha256_hex(contents),
            target: None,
        });
        Ok(())
    }

    /// Writes unless `inside` already holds exactly `contents` with `mode`; returns whether it
    /// wrote. This is how a second run changes nothing (same inode, same mtime).
    pub fn write_if_changed(&mut self, inside: &str, contents: &[u8], mode: u32) -> Result<bool> {
        if let Some(p) = self.read_host_path(inside)
            && files::mode_of(&p) == Some(mode)
            && std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_file())
            && files::read_optional(&p)?.as_deref() == Some(contents)
        {
            return Ok(false);
        }
        self.write(inside, contents, mode)?;
        Ok(true)
    }

    /// Points the symlink `inside` at `target` (a name in the same directory).
    pub fn link(&mut self, inside: &str, target: &str) -> Result<bool> {
        self.check_write(inside, None)?;
        if self.read_link(inside).as_deref() == Some(target)
            && self.exists(&sibling(inside, target))
        {
            return Ok(false);
        }
        let host = self.write_host_path(inside);
        files::blocking(|| files::symlink_atomic(&host, Path::new(target)))?;
        if let Some(parent) = host.parent() {
            self.pending_syncs.insert(parent.to_path_buf());
        }
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
        if !self
            .allowed_removes
            .iter()
            .any(|p| files::glob_match(p, inside))
        {
            return Err(Error::internal(format!(
                "phase {:?} tried to remove {inside}, which phases/{}.toml does not declare; this is a bug in bootlet",
                self.phase, self.phase
            )));
        }
        if !self.exists(inside) {
            return Ok(false);
        }
        // Removals are made durable together when the phase ends (`flush`): one directory sync per
        // directory instead of one per file. A removal lost to a crash is redone by the next run.
        let host = match &self.dry_dir {
            Some(d) => {
                self.dry_removed.insert(inside.to_string());
                files::host_path(d, inside)
            }
            None => self.layout.host(inside),
        };
        if files::blocking(|| files::remove_file_unsynced(&host))?
            && let Some(parent) = host.parent()
        {
            self.pending_syncs.insert(parent.to_path_buf());
        }
        self.records.push(FileRecord {
            path: inside.to_string(),
            kind: "removed".into(),
            mode: String::new(),
            size: 0,
            sha256: String::new(),
            target: None,
        });
        Ok(true)
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

    #[test]
    fn undeclared_writes_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let mut w = World::new(layout(root.path()), None);
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
        let mut w = World::new(layout(root.path()), Some(dry.path().to_path_buf()));
        w.enter_phase(
            "t",
            vec![("/etc/*.conf".into(), Some(0o600))],
            vec!["/etc/*.conf".into()],
        );
        assert_eq!(w.read("/etc/old.conf").unwrap().unwrap(), b"old");
        w.write("/etc/new.conf", b"new", 0o600).unwrap();
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
}
