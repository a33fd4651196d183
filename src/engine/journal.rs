//! The journal: what earlier runs did, so that a re-run resumes exactly.
//!
//! The world (files, the cluster) is the truth; the journal is the memory. It holds per-phase
//! status and the public facts a resume needs (CSR names, key fingerprints, token id, server),
//! never a token secret or key. It is rewritten atomically after every step, so a kill leaves the
//! previous or the next version, never a torn one; anything else found there (truncated, another
//! version, another node) is refused with a way out rather than guessed at.
//!
//! It is also the ledger of bootlet's own state files: the sha256 of every file bootlet wrote
//! under its state directory, recorded *before* the file is renamed into place (with the hash it
//! replaces, while that write is in flight). A state file the ledger does not vouch for was not
//! written by bootlet and is refused.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::files::LayoutKind;

/// Journal format version this binary writes and reads.
pub const VERSION: u32 = 2;

/// Where a phase got to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PhaseState {
    /// Started, not finished (killed, failed, or still running).
    Running,
    /// Finished successfully.
    Done,
    /// Failed with an error (recorded for the operator; the phase runs again next time).
    Failed,
}

/// One phase's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseRecord {
    /// Status.
    pub state: PhaseState,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339, when done or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// The last error, one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Public facts for resume.
    #[serde(default)]
    pub facts: BTreeMap<String, String>,
}

/// What the ledger knows of one state file bootlet wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// sha256 of the content bootlet wrote (or is writing); empty for a link.
    pub sha256: String,
    /// For a symlink bootlet made: its target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// While the write is in flight: the sha256 it replaces (`""` for no file), which a crash may
    /// have left in place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
}

impl FileEntry {
    /// Whether content with `sha256` is what bootlet wrote (or what an interrupted write left).
    pub fn vouches_for(&self, sha256: &str) -> bool {
        self.sha256 == sha256 || self.replaces.as_deref() == Some(sha256)
    }
}

/// The journal file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Journal {
    /// Format version.
    pub version: u32,
    /// The node this journal is about.
    pub node_name: String,
    /// Its layout.
    pub layout: LayoutKind,
    /// For the Krustlet layout, its data directory as resolved when the node joined (inside the
    /// root), so that later commands use it whatever `$HOME` says then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub krustlet_data_dir: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// Per-phase records.
    #[serde(default)]
    pub phases: BTreeMap<String, PhaseRecord>,
    /// The ledger: state files bootlet wrote, by inside-root path.
    #[serde(default)]
    pub files: BTreeMap<String, FileEntry>,
}

const CHECKSUM_PREFIX: &str = "# sha256 of the lines above: ";

/// The body of `text` if its last line is a matching checksum of everything before it.
fn verify_checksum(text: &str) -> Option<&str> {
    let trimmed = text.strip_suffix('\n')?;
    let split = trimmed.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let (body, last) = trimmed.split_at(split);
    let sum = last.strip_prefix(CHECKSUM_PREFIX)?;
    (sum == crate::pki::sha256_hex(body.as_bytes())).then_some(body)
}

/// `/a/b/c`: absolute, no empty, `.` or `..` component, no trailing slash, no NUL.
fn is_normal_absolute(path: &str) -> bool {
    path.strip_prefix('/').is_some_and(|rest| {
        !rest.is_empty()
            && !path.contains('\0')
            && rest
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != "..")
    })
}

/// Now as RFC 3339 UTC.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Journal {
    /// A fresh journal.
    pub fn new(node_name: &str, layout: LayoutKind) -> Journal {
        let now = now_rfc3339();
        Journal {
            version: VERSION,
            node_name: node_name.to_string(),
            layout,
            krustlet_data_dir: None,
            created_at: now.clone(),
            updated_at: now,
            phases: BTreeMap::new(),
            files: BTreeMap::new(),
        }
    }

    /// Parses journal text found at `path_shown`, refusing what cannot be trusted.
    pub fn parse(text: &str, path_shown: &str) -> Result<Journal> {
        let state_dir = path_shown
            .rsplit_once('/')
            .map(|(d, _)| d)
            .unwrap_or(path_shown);
        let way_out = format!(
            "move the state directory away (mv {state_dir} {state_dir}.bak) to start over; bootlet trusts no state file without its journal"
        );
        let body = verify_checksum(text).ok_or_else(|| {
            Error::conflict(format!(
                "the journal {path_shown} is damaged (its checksum line is missing or wrong: truncated or edited?); {way_out}"
            ))
        })?;
        let text = body;
        // Version first, so that a newer format gets a clear message rather than a field error.
        let value: toml::Table = toml::from_str(text).map_err(|_| {
            Error::conflict(format!(
                "the journal {path_shown} is unreadable (not valid TOML: truncated or edited?); {way_out}"
            ))
        })?;
        match value.get("version").and_then(|v| v.as_integer()) {
            Some(v) if v == i64::from(VERSION) => {}
            Some(v) => {
                return Err(Error::conflict(format!(
                    "the journal {path_shown} has format version {v}, this bootlet reads version {VERSION}; use the bootlet that wrote it, or {way_out}"
                )));
            }
            None => {
                return Err(Error::conflict(format!(
                    "the journal {path_shown} has no format version; {way_out}"
                )));
            }
        }
        let journal: Journal = toml::from_str(text).map_err(|e| {
            Error::conflict(format!(
                "the journal {path_shown} does not have the expected fields ({}); {way_out}",
                e.message()
            ))
        })?;
        journal.refuse_tampered_paths(path_shown, &way_out)?;
        Ok(journal)
    }

    /// A checksum proves only that the text is whole, not who wrote it: every path in it must be
    /// one bootlet could have written (absolute, normal, no `..`), and every link target a name in
    /// the link's own directory, or the journal was edited to steer `reset` out of its files.
    fn refuse_tampered_paths(&self, path_shown: &str, way_out: &str) -> Result<()> {
        let tampered = |what: &str, value: &str| {
            Error::conflict(format!(
                "the journal {path_shown} names {what} {value:?}, which bootlet never writes (a relative, `..` or `.` component): it was edited; {way_out}"
            ))
        };
        for (path, entry) in &self.files {
            if !is_normal_absolute(path) {
                return Err(tampered("the file", path));
            }
            if let Some(target) = &entry.link
                && (target.is_empty() || target.contains('/') || target == "." || target == "..")
            {
                return Err(tampered("the link target", target));
            }
        }
        if let Some(dir) = &self.krustlet_data_dir
            && !is_normal_absolute(dir)
        {
            return Err(tampered("the Krustlet data directory", dir));
        }
        Ok(())
    }

    /// TOML text.
    pub fn render(&self) -> Result<String> {
        let body = toml::to_string(self)
            .map_err(|e| Error::internal(format!("cannot render the journal: {e}")))?;
        Ok(format!(
            "{body}{CHECKSUM_PREFIX}{}\n",
            crate::pki::sha256_hex(body.as_bytes())
        ))
    }

    /// Refuses a journal written for another node or layout.
    pub fn check_intent(
        &self,
        node_name: &str,
        layout: LayoutKind,
        path_shown: &str,
    ) -> Result<()> {
        if self.node_name != node_name {
            return Err(Error::conflict(format!(
                "the journal {path_shown} belongs to node {:?}, but this run is for node {node_name:?}; rerun with --node-name {}, or move the journal away to start a new join",
                self.node_name, self.node_name
            )));
        }
        if self.layout != layout {
            return Err(Error::conflict(format!(
                "the journal {path_shown} was written for the {} layout, this run uses {}; rerun with --layout {}, or move the journal away",
                self.layout.name(),
                layout.name(),
                self.layout.name()
            )));
        }
        Ok(())
    }

    /// Whether `phase` finished.
    pub fn is_done(&self, phase: &str) -> bool {
        self.phases
            .get(phase)
            .is_some_and(|r| r.state == PhaseState::Done)
    }

    /// A recorded fact.
    pub fn fact(&self, phase: &str, key: &str) -> Option<&str> {
        self.phases
            .get(phase)
            .and_then(|r| r.facts.get(key))
            .map(String::as_str)
    }

    /// Marks `phase` running (keeping facts from an earlier attempt, which a resume needs).
    pub fn start(&mut self, phase: &str) {
        let now = now_rfc3339();
        let rec = self
            .phases
            .entry(phase.to_string())
            .or_insert_with(|| PhaseRecord {
                state: PhaseState::Running,
                started_at: now.clone(),
                finished_at: None,
                error: None,
                facts: BTreeMap::new(),
            });
        rec.state = PhaseState::Running;
        rec.started_at = now.clone();
        rec.finished_at = None;
        rec.error = None;
        self.updated_at = now;
    }

    /// Records a fact for `phase`.
    pub fn set_fact(&mut self, phase: &str, key: &str, value: &str) {
        if let Some(rec) = self.phases.get_mut(phase) {
            rec.facts.insert(key.to_string(), value.to_string());
        }
        self.updated_at = now_rfc3339();
    }

    /// Records that bootlet is writing `sha256` to the state file `inside` (before the rename).
    pub fn intend_file(&mut self, inside: &str, sha256: &str) {
        let before = self.files.get(inside).map(|e| e.sha256.clone());
        if before.as_deref() == Some(sha256) {
            return;
        }
        self.files.insert(
            inside.to_string(),
            FileEntry {
                sha256: sha256.to_string(),
                link: None,
                replaces: Some(before.unwrap_or_default()),
            },
        );
    }

    /// Records a file bootlet has written outside its state directory (for `reset`).
    pub fn record_file(&mut self, inside: &str, sha256: &str) {
        self.files.insert(
            inside.to_string(),
            FileEntry {
                sha256: sha256.to_string(),
                link: None,
                replaces: None,
            },
        );
    }

    /// Records a symlink bootlet has made (for `reset`).
    pub fn record_link(&mut self, inside: &str, target: &str) {
        self.files.insert(
            inside.to_string(),
            FileEntry {
                sha256: String::new(),
                link: Some(target.to_string()),
                replaces: None,
            },
        );
    }

    /// Records that the write of `inside` completed: only its new content counts from now on.
    pub fn settle_file(&mut self, inside: &str) {
        if let Some(e) = self.files.get_mut(inside) {
            e.replaces = None;
        }
    }

    /// Forgets the state file `inside` (bootlet removed it).
    pub fn forget_file(&mut self, inside: &str) {
        self.files.remove(inside);
    }

    /// Marks `phase` done or failed.
    pub fn finish(&mut self, phase: &str, error: Option<&str>) {
        let now = now_rfc3339();
        if let Some(rec) = self.phases.get_mut(phase) {
            rec.state = if error.is_some() {
                PhaseState::Failed
            } else {
                PhaseState::Done
            };
            rec.finished_at = Some(now.clone());
            rec.error = error.map(str::to_string);
        }
        self.updated_at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ledger_vouches_for_new_and_in_flight_content() {
        let mut j = Journal::new("n1", LayoutKind::Kubelet);
        j.intend_file("/s/a", "h1");
        assert!(j.files["/s/a"].vouches_for("h1"));
        assert!(
            j.files["/s/a"].vouches_for(""),
            "no file yet: a crash may leave none"
        );
        j.settle_file("/s/a");
        j.intend_file("/s/a", "h2");
        assert!(j.files["/s/a"].vouches_for("h1") && j.files["/s/a"].vouches_for("h2"));
        j.settle_file("/s/a");
        assert!(!j.files["/s/a"].vouches_for("h1"));
        let back = Journal::parse(&j.render().unwrap(), "j").unwrap();
        assert_eq!(back.files, j.files);
        j.forget_file("/s/a");
        assert!(j.files.is_empty());
    }

    #[test]
    fn round_trip_and_refusals() {
        let mut j = Journal::new("n1", LayoutKind::Kubelet);
        j.start("client-csr");
        j.set_fact("client-csr", "csr_name", "node-csr-x");
        j.finish("client-csr", None);
        let text = j.render().unwrap();
        let back = Journal::parse(&text, "j").unwrap();
        assert_eq!(back, j);
        assert!(back.is_done("client-csr"));
        assert_eq!(back.fact("client-csr", "csr_name"), Some("node-csr-x"));

        let truncated = &text[..text.len() / 2];
        let e = Journal::parse(truncated, "j").unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::Conflict);
        assert!(e.message().contains("move the state directory away"), "{e}");
        let cut_at_line = &text[..text.find("[phases").unwrap()];
        assert!(
            Journal::parse(cut_at_line, "j").is_err(),
            "a journal cut at a line boundary must be refused"
        );
        let edited = text.replace("node-csr-x", "node-csr-y");
        assert!(
            Journal::parse(&edited, "j")
                .unwrap_err()
                .message()
                .contains("damaged")
        );
        let mut v9 = j.clone();
        v9.version = 9;
        let e = Journal::parse(&v9.render().unwrap(), "j").unwrap_err();
        assert!(e.message().contains("version 9"), "{e}");
        let e = back
            .check_intent("n2", LayoutKind::Kubelet, "j")
            .unwrap_err();
        assert!(e.message().contains("--node-name n1"), "{e}");
    }
}
