//! Reading in a world: the dry-run directory before the real root, and bootlet's state files only
//! when the journal vouches for them (regular file, the running user's, private when secret, the
//! recorded content); anything else is named as planted or changed outside bootlet.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::World;
use crate::error::{Error, Result};
use crate::files;
use crate::files::confined::{self, Meta, Root};
use crate::kubeconfig::ClusterAccess;

/// Which root held each path a world asked about (see [`World::root_holding`]).
pub(super) type Lookups = Arc<Mutex<HashMap<String, Option<Holder>>>>;

/// The root that holds a path (see [`World::root_holding`]).
#[derive(Debug, Clone, Copy)]
pub(super) enum Holder {
    DryRun,
    Real,
}

/// Forgets the world's lookups when made and again when dropped: held by each method that
/// changes the files, so that no lookup made before or during the change outlives it.
pub(super) struct ChangingFiles(Lookups);

impl ChangingFiles {
    pub(super) fn begin(lookups: &Lookups) -> ChangingFiles {
        forget(lookups);
        ChangingFiles(lookups.clone())
    }
}

impl Drop for ChangingFiles {
    fn drop(&mut self) {
        forget(&self.0);
    }
}

fn forget(lookups: &Mutex<HashMap<String, Option<Holder>>>) {
    lookups.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

impl World {
    /// Which root holds `inside` in this world (the dry-run directory first), if any.
    pub(super) fn root_holding(&self, inside: &str) -> Option<&Root> {
        if self.pending_removed.contains(inside) {
            return None;
        }
        if self.dry_dir.is_some() && self.dry_removed.contains(inside) {
            return None;
        }
        let mut lookups = self.lookups.lock().unwrap_or_else(|e| e.into_inner());
        let holder = *lookups
            .entry(inside.to_string())
            .or_insert_with(|| self.look_up(inside));
        match holder? {
            Holder::DryRun => self.dry_root.as_deref(),
            Holder::Real => Some(&self.real_root),
        }
    }

    fn look_up(&self, inside: &str) -> Option<Holder> {
        if let Some(d) = &self.dry_root
            && confined::exists_at(d, inside)
        {
            return Some(Holder::DryRun);
        }
        confined::exists_at(&self.real_root, inside).then_some(Holder::Real)
    }

    /// Where `inside` is read from, or `None` if it does not exist in this world.
    pub fn read_host_path(&self, inside: &str) -> Option<PathBuf> {
        self.root_holding(inside)
            .map(|root| files::host_path(root.path(), inside))
    }

    /// Reads `inside`, `None` if absent. A state file is returned only when the journal vouches
    /// for it (see the module comment); other files are read following links.
    pub fn read(&self, inside: &str) -> Result<Option<Vec<u8>>> {
        if let Some((c, _)) = self.deferred_content.get(inside) {
            return Ok(Some(c.clone()));
        }
        if let Some(target) = self.staged_link(inside) {
            return self.read(&super::sibling(inside, target));
        }
        if self.layout.is_tracked_state(inside) {
            return self.read_state(inside);
        }
        self.read_in_root(inside)
    }

    /// Reads a file that is not bootlet's state: confined to the root, following one link at its
    /// end (a `-current.pem` link, bootlet's or the kubelet's) only when it leads to a regular
    /// file inside the root. A link out of the root is refused by name, never read.
    fn read_in_root(&self, inside: &str) -> Result<Option<Vec<u8>>> {
        let Some(root) = self.root_to_read(inside) else {
            return Ok(None);
        };
        let shown = || files::host_path(root.path(), inside).display().to_string();
        let Some((bytes, meta)) = confined::read_nofollow(root, inside)? else {
            return Ok(None);
        };
        if meta.is_file {
            return Ok(Some(bytes));
        }
        if !meta.is_symlink {
            return Err(Error::conflict(format!(
                "{} is not a regular file (a directory where a file was expected?); move it away",
                shown()
            )));
        }
        let target = std::fs::read_link(files::host_path(root.path(), inside))
            .map_err(|e| Error::io("read the link", Path::new(&shown()), e))?;
        let Some(resolved) = link_target_inside(inside, &target) else {
            return Err(Error::conflict(format!(
                "{} is a link to {}, outside --root {}: bootlet reads nothing outside the root; remove the link, then rerun (a join or renew writes it again)",
                shown(),
                target.display(),
                root.path().display()
            )));
        };
        match confined::read_nofollow(root, &resolved)? {
            // An absolute target that is no file inside the root names a host path: refused by
            // name, never followed out (a dangling relative link is simply no file).
            None if target.is_absolute() => Err(Error::conflict(format!(
                "{} is a link to {}, which is outside --root {} (no such file as the root sees it): bootlet reads nothing outside the root; remove the link, then rerun (a join or renew writes it again)",
                shown(),
                target.display(),
                root.path().display()
            ))),
            None => Ok(None),
            Some((bytes, meta)) if meta.is_file => Ok(Some(bytes)),
            Some(_) => Err(Error::conflict(format!(
                "{} is a link to {}, which is not a regular file (a link to a link?); remove the link, then rerun",
                shown(),
                target.display()
            ))),
        }
    }

    /// The root a confined read of `inside` starts from, `None` when this world holds nothing
    /// there. Without a dry-run directory it is the real root, asked directly: the read itself
    /// reports a missing file, so the `lstat` of [`World::root_holding`] would be a second look.
    fn root_to_read(&self, inside: &str) -> Option<&Root> {
        if self.dry_root.is_none() {
            return (!self.pending_removed.contains(inside)).then_some(&*self.real_root);
        }
        self.root_holding(inside)
    }

    fn read_state(&self, inside: &str) -> Result<Option<Vec<u8>>> {
        let Some(root) = self.root_to_read(inside) else {
            return Ok(None);
        };
        let Some((bytes, meta)) = confined::read_nofollow(root, inside)? else {
            return Ok(None);
        };
        let why = self.distrust(inside, &bytes, &meta);
        match why {
            None => Ok(Some(bytes)),
            Some(why) => Err(Error::conflict(format!(
                "planted or changed outside bootlet: {} ({why}); remove it to start over",
                files::host_path(root.path(), inside).display()
            ))),
        }
    }

    /// Why the state file `inside` cannot be bootlet's own, or `None` when it is.
    fn distrust(&self, inside: &str, bytes: &[u8], meta: &Meta) -> Option<String> {
        if meta.is_symlink {
            return Some("it is a symbolic link, not a file bootlet wrote".into());
        }
        if !meta.is_file {
            return Some("it is not a regular file".into());
        }
        if meta.uid != confined::euid() {
            return Some(format!(
                "owned by uid {}, not by the running user (uid {})",
                meta.uid,
                confined::euid()
            ));
        }
        if self.layout.is_secret_state(inside) && meta.mode & 0o077 != 0 {
            return Some(format!(
                "it holds a secret but its mode {:04o} lets group or others read it",
                meta.mode
            ));
        }
        let sha = crate::pki::sha256_hex(bytes);
        match self.journal.files.get(inside) {
            None => Some("the journal does not record it".into()),
            Some(e) if !e.vouches_for(&sha) => Some(format!(
                "its content (sha256 {}…) is not what bootlet wrote (sha256 {}…)",
                &sha[..12],
                &e.sha256[..e.sha256.len().min(12)]
            )),
            Some(_) => None,
        }
    }

    /// Reads the journal file itself: a regular file owned by the running user and private, or
    /// an error saying why not. `None` when there is none.
    pub fn read_journal_text(&self) -> Result<Option<(String, String)>> {
        let inside = self.layout.path("journal");
        let Some(root) = self.root_to_read(inside) else {
            return Ok(None);
        };
        let shown = files::host_path(root.path(), inside).display().to_string();
        let Some((bytes, meta)) = confined::read_nofollow(root, inside)? else {
            return Ok(None);
        };
        let why = if meta.is_symlink {
            Some("it is a symbolic link".to_string())
        } else if !meta.is_file {
            Some("it is not a regular file".into())
        } else if meta.uid != confined::euid() {
            Some(format!(
                "owned by uid {}, not by the running user (uid {})",
                meta.uid,
                confined::euid()
            ))
        } else if meta.mode & 0o077 != 0 {
            Some(format!("mode {:04o} is not private", meta.mode))
        } else {
            None
        };
        if let Some(why) = why {
            return Err(Error::conflict(format!(
                "planted or changed outside bootlet: {shown} ({why}); remove it to start over"
            )));
        }
        Ok(Some((String::from_utf8_lossy(&bytes).into_owned(), shown)))
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
        if let Some(target) = self.staged_link(inside) {
            return Some(target.to_string());
        }
        if self.deferred_content.contains_key(inside) {
            return None;
        }
        let p = self.read_host_path(inside)?;
        std::fs::read_link(p)
            .ok()
            .map(|t| t.to_string_lossy().into_owned())
    }

    /// The target of the link this run staged at `inside`, if it staged one (one at most: a
    /// write or link at a path abandons what was staged there before).
    fn staged_link(&self, inside: &str) -> Option<&str> {
        self.deferred_links
            .iter()
            .find(|(p, _)| p == inside)
            .map(|(_, target)| target.as_str())
    }

    /// Whether `inside` exists (as anything).
    pub fn exists(&self, inside: &str) -> bool {
        self.deferred_content.contains_key(inside)
            || self.staged_link(inside).is_some()
            || self.read_host_path(inside).is_some()
    }

    /// Mode and owner of `inside` (following a link at its end), if it exists.
    pub fn mode_and_owner(&self, inside: &str) -> Option<(u32, u32)> {
        if let Some((_, mode)) = self.deferred_content.get(inside) {
            return Some((*mode, confined::euid()));
        }
        if let Some(target) = self.staged_link(inside) {
            return self.mode_and_owner(&super::sibling(inside, target));
        }
        let p = self.read_host_path(inside)?;
        Some((files::mode_of(&p)?, files::owner_of(&p)?))
    }

    /// Whether `inside` is a regular file (not a link to one).
    pub fn is_regular_file(&self, inside: &str) -> bool {
        if self.deferred_content.contains_key(inside) {
            return true;
        }
        if self.staged_link(inside).is_some() {
            return false;
        }
        self.read_host_path(inside)
            .is_some_and(|p| std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_file()))
    }

    /// The kubeconfig at `inside` as this run sees it (its own writes included, before they are
    /// put in place), `None` when absent; relative references resolve beside its path.
    pub fn read_kubeconfig(&self, inside: &str, what: &str) -> Result<Option<ClusterAccess>> {
        let Some(text) = self.read_string(inside)? else {
            return Ok(None);
        };
        let host = self
            .read_host_path(inside)
            .unwrap_or_else(|| self.write_host_path(inside));
        crate::kubeconfig::parse_file_text(&text, &host, what).map(Some)
    }

    /// Whether `inside` still holds what the journal records bootlet wrote there (the same content,
    /// or for a link the same target): what reset may remove and a phase may replace.
    pub fn holds_what_bootlet_wrote(&self, inside: &str) -> bool {
        let Some(entry) = self.journal.files.get(inside) else {
            return false;
        };
        match &entry.link {
            Some(target) => self.read_link(inside).as_deref() == Some(target.as_str()),
            None => self
                .read(inside)
                .ok()
                .flatten()
                .is_some_and(|b| entry.vouches_for(&crate::pki::sha256_hex(&b))),
        }
    }
}

/// Where the link at `inside` leads, as a path inside the root, if it stays inside. Targets are
/// read as the root sees them (it is a chroot-style prefix, and a kubelet running on it writes
/// absolute targets): an absolute one from the root, a relative one from the link's directory;
/// `..` above the root leads out of it.
pub fn link_target_inside(inside: &str, target: &Path) -> Option<String> {
    use std::path::Component;
    let mut parts: Vec<String> = Vec::new();
    if !target.is_absolute() {
        let dir = inside.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
        parts.extend(
            dir.split('/')
                .filter(|c| !c.is_empty() && *c != ".")
                .map(String::from),
        );
    }
    for c in target.components() {
        match c {
            Component::Normal(n) => parts.push(n.to_str()?.to_string()),
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                parts.pop()?;
            }
        }
    }
    (!parts.is_empty()).then(|| format!("/{}", parts.join("/")))
}
