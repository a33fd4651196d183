//! Which layout a root was joined with, for the commands after the join (`renew`, `reset`,
//! `certs check-expiration`, a second `join`) when they are not told again: the journal records
//! the layout and, for Krustlet's, the data directory as it was resolved then (so it does not move
//! with `$HOME`). The journal is looked for where an earlier run keeps it: `--state-dir` if given,
//! else `/var/lib/bootlet` (every layout's state when bootlet runs as root), else the Krustlet
//! data directory's `bootlet/` (a Krustlet node joined by a non-root user, or an older bootlet).

use crate::error::{Error, Result};
use crate::files::{Layout, LayoutKind};
use crate::settings::Settings;

use super::journal::Journal;
use super::world::World;

/// Adopts the layout (and Krustlet data and state directory) the root's journal records when the
/// settings do not name one; refuses a `--layout` that contradicts it.
pub fn adopt(settings: &mut Settings) -> Result<()> {
    let Some((journal, state_dir, shown)) = find(settings)? else {
        return Ok(());
    };
    if settings.layout_given && settings.layout != journal.layout {
        return Err(Error::conflict(format!(
            "this root was joined with --layout {} (its journal is {shown}); rerun without --layout, or with --layout {}",
            journal.layout.name(),
            journal.layout.name()
        )));
    }
    settings.layout = journal.layout;
    if let Some(dir) = journal.krustlet_data_dir.as_deref()
        && !settings.krustlet_data_dir_given
    {
        settings.krustlet_data_dir = dir.to_string();
    }
    if settings.state_dir.is_none() {
        settings.state_dir = state_dir;
    }
    Ok(())
}

/// The first journal found: (journal, the state dir to name explicitly if it is not the default
/// for the layout, the journal's path as shown).
fn find(settings: &Settings) -> Result<Option<(Journal, Option<String>, String)>> {
    let mut candidates: Vec<(LayoutKind, Option<String>)> = Vec::new();
    match &settings.state_dir {
        Some(dir) => candidates.push((settings.layout, Some(dir.clone()))),
        None => {
            candidates.push((LayoutKind::Kubelet, None));
            let data = settings.krustlet_data_dir.trim_end_matches('/');
            candidates.push((LayoutKind::Krustlet, Some(format!("{data}/bootlet"))));
        }
    }
    for (kind, state_dir) in candidates {
        let layout = Layout::new(
            kind,
            settings.root.clone(),
            &settings.krustlet_data_dir,
            state_dir.as_deref(),
        )?;
        let probe = World::new(layout, None, Journal::new(&settings.node_name, kind));
        probe.check_confined()?;
        if let Some((text, shown)) = probe.read_journal_text()? {
            let journal = Journal::parse(&text, &shown)?;
            let explicit = state_dir.filter(|_| kind == LayoutKind::Krustlet);
            return Ok(Some((journal, explicit, shown)));
        }
    }
    Ok(None)
}
