//! When a run's staged work becomes visible and durable: a flush stages the journal beside the
//! phases' files, syncs once, then renames everything into place in order; a settle makes those
//! renames durable. docs/decisions.md ("Staged work waits for the next point that needs it") argues
//! the order.

use std::collections::BTreeMap;

use super::reading::ChangingFiles;
use super::{Removal, World, dir_of};
use crate::error::Result;
use crate::files;
use crate::files::confined::{self, Root, Staged};
use crate::files::durability::{self, SyncMode};

impl World {
    /// Puts the staged writes, links and removals in place: the journal (when it has changed, or a
    /// state file waits for it) is staged with them, and so is the journal as it will be after the
    /// removals (it forgets the state files they remove); one sync makes all of them durable. Then
    /// the journal is renamed in, the files and links appear in the order they were made, the
    /// removals are done, and the journal after them replaces the first. At every moment the
    /// journal on disk vouches for every state file present. Those renames are durable after the
    /// next sync ([`World::settle`]). A dry-run does not sync: nothing in its directory is a
    /// credential anything uses.
    pub fn flush(&mut self) -> Result<()> {
        let _changing = ChangingFiles::begin(&self.lookups);
        let root = self.write_root();
        let journal_path = self.layout.path("journal").to_string();
        if !self.journal_retired && (self.journal_dirty || !self.deferred.is_empty()) {
            let text = self.journal.render()?;
            let staged = confined::stage_unsynced(
                &root,
                &journal_path,
                text.as_bytes(),
                files::SECRET_FILE_MODE,
            )?;
            self.deferred.insert(0, (journal_path.clone(), staged));
            self.put_order.insert(0, journal_path.clone());
            self.journal_dirty = false;
        }
        let removed_state = self.removed_state_files();
        let after_removals = self.stage_journal_after(&root, &removed_state)?;
        if !self.is_dry_run() && (!self.deferred.is_empty() || after_removals.is_some()) {
            let deferred = &self.deferred;
            let staged = || deferred.iter().map(|(_, s)| s).chain(&after_removals);
            files::blocking(|| match self.sync_mode {
                SyncMode::Filesystem => durability::sync_filesystems(staged().map(Staged::dir)),
                SyncMode::PerFile => staged().try_for_each(Staged::sync),
            })?;
        }
        let mut files: BTreeMap<String, Staged> =
            std::mem::take(&mut self.deferred).into_iter().collect();
        let mut links: BTreeMap<String, String> = std::mem::take(&mut self.deferred_links)
            .into_iter()
            .collect();
        for inside in std::mem::take(&mut self.put_order) {
            if let Some(staged) = files.remove(&inside) {
                staged.commit()?;
                self.journal.settle_file(&inside);
            } else if let Some(target) = links.remove(&inside) {
                confined::symlink(&root, &inside, &target)?;
            }
            self.unsettled.insert(dir_of(&inside));
        }
        self.deferred_content.clear();
        if let Err(e) = self.remove_deferred(&root) {
            if let Some(after) = after_removals {
                after.abandon();
            }
            return Err(e);
        }
        for inside in &removed_state {
            self.journal.forget_file(inside);
        }
        if let Some(after) = after_removals {
            after.commit()?;
            self.unsettled.insert(dir_of(&journal_path));
        }
        self.pending_removed.clear();
        Ok(())
    }

    /// The state files the deferred removals remove that the journal's ledger names.
    fn removed_state_files(&self) -> Vec<String> {
        self.deferred_removals
            .iter()
            .filter_map(|r| match r {
                Removal::File(p) if self.journal.files.contains_key(p) => Some(p.clone()),
                _ => None,
            })
            .collect()
    }

    /// Stages the journal as it will be once `removed` are gone (and the staged files in place),
    /// if it will change: renamed in after the removals, so that the ledger never names fewer
    /// files than are present (the next run would distrust the others).
    fn stage_journal_after(&self, root: &Root, removed: &[String]) -> Result<Option<Staged>> {
        if self.journal_retired || removed.is_empty() {
            return Ok(None);
        }
        let mut after = self.journal.clone();
        for (inside, _) in &self.deferred {
            after.settle_file(inside);
        }
        for inside in removed {
            after.forget_file(inside);
        }
        let path = self.layout.path("journal");
        let text = after.render()?;
        confined::stage_unsynced(root, path, text.as_bytes(), files::SECRET_FILE_MODE).map(Some)
    }

    /// Does the deferred removals, after the files they make way for are in place.
    fn remove_deferred(&mut self, root: &Root) -> Result<()> {
        for removal in std::mem::take(&mut self.deferred_removals) {
            let inside = match removal {
                Removal::File(inside) => {
                    confined::remove(root, &inside)?;
                    self.record_removal(&inside, "");
                    inside
                }
                Removal::Dir(inside) => {
                    confined::remove_dir(root, &inside)?;
                    self.record_removal(&inside, "dir");
                    inside
                }
            };
            self.unsettled.insert(dir_of(&inside));
        }
        Ok(())
    }

    /// Makes every rename, link, removal and mode change made so far durable (one sync per
    /// filesystem): before a promise that depends on them (a CSR sent for a key) and at the end of
    /// a run, failed or not.
    pub fn settle(&mut self) -> Result<()> {
        if self.unsettled.is_empty() {
            return Ok(());
        }
        let dirs: Vec<String> = std::mem::take(&mut self.unsettled).into_iter().collect();
        if self.is_dry_run() {
            return Ok(());
        }
        let root = self.write_root();
        files::blocking(|| match self.sync_mode {
            SyncMode::Filesystem => durability::sync_dirs_filesystems(&root, &dirs),
            SyncMode::PerFile => dirs.iter().try_for_each(|d| confined::sync_dir(&root, d)),
        })
    }

    /// Ends the run's file work: what its phases left staged is put in place with the journal (a
    /// journal that changed without files, after a phase that only sent requests, is written when
    /// one exists or this run changed files), and everything is made durable.
    pub fn finish(&mut self) -> Result<()> {
        let journal_waits =
            self.journal_dirty && !self.journal_retired && self.journal_exists_or_changed();
        if self.has_staged_work() || journal_waits {
            self.flush()?;
        }
        self.settle()
    }

    /// Whether writes, links or removals wait for a flush.
    fn has_staged_work(&self) -> bool {
        !self.deferred.is_empty()
            || !self.deferred_links.is_empty()
            || !self.deferred_removals.is_empty()
    }

    fn journal_exists_or_changed(&self) -> bool {
        !self.unsettled.is_empty() || self.exists(self.layout.path("journal"))
    }

    /// Writes like [`World::write`] and makes it durable, in place, before returning, for a file
    /// that must be on disk before the phase acts on it (a key, before its CSR is sent).
    pub fn write_durable(&mut self, inside: &str, contents: &[u8], mode: u32) -> Result<()> {
        self.write(inside, contents, mode)?;
        self.flush()?;
        self.settle()
    }

    /// Marks the journal for saving with the next [`World::flush`]; `durable_now` puts it in place
    /// and makes it durable at once.
    pub fn save_journal(&mut self, durable_now: bool) -> Result<()> {
        self.journal_dirty = true;
        if durable_now {
            self.flush()?;
            self.settle()
        } else {
            Ok(())
        }
    }
}
