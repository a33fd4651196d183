//! Phase manifests (`phases/<workflow>/<name>.toml`): each phase's contract within a workflow, and
//! the only source of the workflow's graph; `phases/<workflow>/workflow.toml` describes the
//! workflow itself.

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::files::{Layout, LayoutKind};

include!(concat!(env!("OUT_DIR"), "/manifests.rs"));

/// A workflow's own manifest (`phases/<workflow>/workflow.toml`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WorkflowManifest {
    /// Workflow name; must equal the folder name.
    pub name: String,
    /// Position in listings.
    pub order: u32,
    /// One line saying what the workflow does.
    pub summary: String,
    /// Whether a phase counts as done once every phase after it is done (its output used up).
    pub done_when_downstream_done: bool,
}

impl WorkflowManifest {
    /// Decodes `phases/<folder>/workflow.toml` (as the JSON build.rs embeds).
    pub fn parse(folder: &str, json: &str) -> Result<WorkflowManifest> {
        let w: WorkflowManifest = serde_json::from_str(json).map_err(|e| {
            Error::internal(format!("phases/{folder}/workflow.toml is invalid: {e}"))
        })?;
        if w.name != folder {
            return Err(Error::internal(format!(
                "phases/{folder}/workflow.toml declares name {:?}; the name must equal the folder",
                w.name
            )));
        }
        Ok(w)
    }
}

/// One phase's contract.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Phase name; must equal the file stem.
    pub name: String,
    /// One line saying what the phase does.
    pub summary: String,
    /// Phases that must have run (or be done) before this one.
    #[serde(default)]
    pub needs: Vec<String>,
    /// Phases that, when they run in the same invocation, run first (ordering only).
    #[serde(default)]
    pub after: Vec<String>,
    /// How the phase decides, from the world, that its job is already done.
    pub done_check: String,
    /// The phase's output is what the workflow is for (the installed credentials), not an input a
    /// later phase uses up: it is done on its own check only, whatever runs after it.
    #[serde(default)]
    pub final_output: bool,
    /// Inputs it reads and who makes them.
    #[serde(default)]
    pub inputs: Vec<Input>,
    /// Files it may write.
    #[serde(default)]
    pub writes: Vec<WriteDecl>,
    /// Files it may remove.
    #[serde(default)]
    pub removes: Vec<RemoveDecl>,
    /// API requests it may send.
    #[serde(default)]
    pub requests: Vec<RequestDecl>,
}

/// An input and the phase (or flag) that produces it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// What the input is, as named in errors.
    pub name: String,
    /// The phase that produces it, or the flag that supplies it.
    pub from: String,
}

/// A file a phase may write.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WriteDecl {
    /// Path template with `{var}` layout references and `*` wildcards.
    pub path: String,
    /// Octal mode like `"0600"`, or `"link"` for a symlink.
    pub mode: String,
    /// Layouts the entry applies to (all when empty).
    #[serde(default)]
    pub layouts: Vec<LayoutKind>,
    /// Why the file exists.
    #[serde(default)]
    pub what: String,
}

/// A file a phase may remove.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RemoveDecl {
    /// Path template.
    pub path: String,
    /// Why.
    #[serde(default)]
    pub what: String,
}

/// An API request a phase may send.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RequestDecl {
    /// Kubernetes verb: get, list, watch, create, update, patch, delete.
    pub verb: String,
    /// Plural resource name.
    pub resource: String,
    /// Which credentials send it.
    pub identity: String,
    /// Why.
    #[serde(default)]
    pub what: String,
}

impl WriteDecl {
    /// Whether the entry applies to `kind`.
    pub fn applies_to(&self, kind: LayoutKind) -> bool {
        self.layouts.is_empty() || self.layouts.contains(&kind)
    }

    /// The mode as a number; `None` for links.
    pub fn mode_bits(&self) -> Option<u32> {
        u32::from_str_radix(&self.mode, 8).ok()
    }
}

impl Manifest {
    /// Decodes one manifest (as the JSON build.rs embeds); `file` is its path under `phases/`
    /// without `.toml` (`join/client-csr`), whose last part must be the phase name.
    pub fn parse(file: &str, json: &str) -> Result<Manifest> {
        let stem = file.rsplit('/').next().unwrap_or(file);
        let m: Manifest = serde_json::from_str(json)
            .map_err(|e| Error::internal(format!("phases/{file}.toml is invalid: {e}")))?;
        if m.name != stem {
            return Err(Error::internal(format!(
                "phases/{file}.toml declares name {:?}; the name must equal the file name",
                m.name
            )));
        }
        for w in &m.writes {
            if w.mode != "link" && w.mode_bits().is_none() {
                return Err(Error::internal(format!(
                    "phases/{file}.toml: mode {:?} of {} is neither octal nor \"link\"",
                    w.mode, w.path
                )));
            }
        }
        Ok(m)
    }

    /// The write patterns that apply to `layout`, expanded to inside-root paths.
    pub fn write_patterns(&self, layout: &Layout) -> Result<Vec<(String, Option<u32>)>> {
        let mut out = Vec::new();
        for w in self.writes.iter().filter(|w| w.applies_to(layout.kind())) {
            let path = layout.expand(&w.path).ok_or_else(|| {
                Error::internal(format!(
                    "phases/{}.toml: {} names a path the {} layout does not have",
                    self.name,
                    w.path,
                    layout.kind().name()
                ))
            })?;
            out.push((path, w.mode_bits()));
        }
        Ok(out)
    }

    /// The removal patterns, expanded; entries naming paths this layout lacks are dropped.
    pub fn remove_patterns(&self, layout: &Layout) -> Vec<String> {
        self.removes
            .iter()
            .filter_map(|r| layout.expand(&r.path))
            .collect()
    }

    /// Whether the manifest declares `verb` on `resource`.
    pub fn allows_request(&self, verb: &str, resource: &str) -> bool {
        self.requests
            .iter()
            .any(|r| r.verb == verb && r.resource == resource)
    }
}
