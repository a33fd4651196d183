//! cleanup-node (reset): remove what bootlet wrote under the root and nothing else. The journal's
//! ledger lists every file and link bootlet wrote (kubelet.conf, the timestamped pairs and their
//! `-current.pem` links, the CA file when bootlet wrote it, the bootstrap kubeconfig, its state);
//! each is removed only while it still holds what bootlet wrote, so a file an operator or the
//! kubelet has since replaced is left alone and named. Then the journal itself, and the state
//! directory when it is empty. kubeadm's `reset` (phase of the same name) deletes whole directories;
//! bootlet keeps to its own files.

use super::Check;
use crate::engine::Ctx;
use crate::engine::journal::FileEntry;
use crate::error::Result;

/// Files the ledger records that are still on disk (sorted), with their entries.
fn recorded_present(cx: &Ctx) -> Vec<(String, FileEntry)> {
    cx.world
        .journal
        .files
        .iter()
        .filter(|(p, _)| cx.world.exists(p))
        .map(|(p, e)| (p.clone(), e.clone()))
        .collect()
}

/// Done when nothing the journal records is left and there is no state directory.
pub async fn check(cx: &mut Ctx) -> Result<Check> {
    let present = recorded_present(cx);
    let state = cx.layout.path("state");
    Ok(if present.is_empty() && !cx.world.exists(state) {
        Check::Done("nothing bootlet wrote is left under the root".into())
    } else {
        Check::NotDone(format!(
            "{} file(s) bootlet wrote are still there",
            present.len()
        ))
    })
}

/// Removes them, and says so only of what is gone: a removal is done when the phase's files are
/// flushed, and a read-only filesystem (or anything else) may refuse it.
pub async fn run(cx: &mut Ctx) -> Result<()> {
    // Links before the files they point at, so that no link is ever left dangling.
    let mut present = recorded_present(cx);
    present.sort_by_key(|(p, e)| (e.link.is_none(), p.clone()));
    let mut removing = Vec::new();
    for (path, _) in present {
        if cx.world.holds_what_bootlet_wrote(&path) {
            cx.world.remove(&path)?;
            removing.push(path);
        } else {
            cx.warn(format!(
                "left {path} alone: it changed since bootlet wrote it (remove it yourself if it is no longer needed)"
            ));
        }
    }
    let flushed = cx.world.flush();
    announce_gone(cx, &removing, "");
    flushed?;
    if cx.world.retire_journal()? {
        let journal = cx.layout.path("journal").to_string();
        announce_gone(cx, &[journal], "");
    }
    let mut dirs = Vec::new();
    for dir in ["staging", "state"] {
        let dir = cx.layout.path(dir).to_string();
        if cx.world.remove_empty_dir(&dir)? {
            dirs.push(dir);
        }
    }
    let flushed = cx.world.flush();
    announce_gone(cx, &dirs, "the directory ");
    flushed
}

/// "Removed PATH" for each of `paths` that is gone now ("Would remove" in a dry run, where
/// nothing under the root goes).
fn announce_gone(cx: &mut Ctx, paths: &[String], what: &str) {
    for path in paths {
        if cx.dry_run() {
            cx.act(format!("Would remove {what}{path}"));
        } else if cx.layout.host(path).symlink_metadata().is_err() {
            // Asked of the disk, not of the world: a removal refused at the flush is still
            // pending there.
            cx.act(format!("Removed {what}{path}"));
        }
    }
}
