//! What a run did (or, in a dry-run, would do): per phase, its status, actions, API requests and
//! files. It is the audit report of `--dry-run` and the JSON of `-o json`. Nothing secret goes in:
//! request bodies are redacted before they are recorded, and files appear by path, mode, size and
//! digest only.

use serde::Serialize;

/// Version of the report format (`report_version`); bumped when a field changes meaning.
pub const REPORT_VERSION: u32 = 1;

/// One API request.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// URL path and query.
    pub path: String,
    /// Kubernetes verb.
    pub verb: String,
    /// Plural resource.
    pub resource: String,
    /// Which credentials: admin, bootstrap token, node, anonymous.
    pub identity: String,
    /// `sent` (real run), `sent (read-only)` (dry-run read that reached the cluster),
    /// `synthesized` (dry-run: no cluster answer, made up and labelled), `not sent` (dry-run mutation).
    pub outcome: String,
    /// The object that was or would be sent, secrets redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
}

/// One file operation.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct FileRecord {
    /// Path as seen from inside the root.
    pub path: String,
    /// `file`, `symlink`, `removed`, or `mode` (an existing file's mode repaired).
    pub kind: String,
    /// Octal mode like `"0600"`; for links `"link"`.
    pub mode: String,
    /// Bytes (0 for links and removals).
    pub size: u64,
    /// SHA-256 of the content (of the link target for links; empty for removals).
    pub sha256: String,
    /// For symlinks, the target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// One phase in the report.
#[derive(Debug, Clone, Serialize, Default)]
pub struct PhaseReport {
    /// Phase name.
    pub name: String,
    /// `ran`, `done` (already done), `skipped`, `failed`, `not-run` (after a failure).
    pub status: String,
    /// Why it has that status.
    pub reason: String,
    /// Human-readable steps.
    pub actions: Vec<String>,
    /// API requests.
    pub requests: Vec<RequestRecord>,
    /// Files.
    pub files: Vec<FileRecord>,
    /// Wall time in milliseconds.
    pub duration_ms: f64,
}

/// The whole run.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Report {
    /// Report format version.
    pub report_version: u32,
    /// `join`, `phase <name>`.
    pub command: String,
    /// Whether this was a dry-run.
    pub dry_run: bool,
    /// Where the dry-run wrote its files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dry_run_dir: Option<String>,
    /// The real root.
    pub root: String,
    /// Layout name.
    pub layout: String,
    /// Node name.
    pub node_name: String,
    /// `succeeded` or `failed`.
    pub result: String,
    /// The error, one line, on failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Phases in run order.
    pub phases: Vec<PhaseReport>,
    /// Wall time of the whole command in milliseconds, from the start of `main` (argument parsing,
    /// settings, lock, planning, every phase and its syncs) to the end of the run.
    pub total_ms: f64,
    /// The part of `total_ms` spent outside any phase: `total_ms` = `outside_phases_ms` + the sum of
    /// the phases' `duration_ms`.
    pub outside_phases_ms: f64,
}

/// When this command started: set first thing in `main`, so that the report's total covers
/// argument parsing and settings too. A library caller that never sets it gets the run's own start.
static COMMAND_START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// Records the command's start (once; later calls keep the first).
pub fn mark_command_start() {
    let _ = COMMAND_START.set(std::time::Instant::now());
}

/// The start of this command, when `main` marked one.
pub fn command_start() -> Option<std::time::Instant> {
    COMMAND_START.get().copied()
}

impl Report {
    /// Fills in `total_ms` and `outside_phases_ms` at the end of the run.
    pub fn account_time(&mut self, started: std::time::Instant) {
        self.total_ms = started.elapsed().as_secs_f64() * 1e3;
        let in_phases: f64 = self.phases.iter().map(|p| p.duration_ms).sum();
        self.outside_phases_ms = (self.total_ms - in_phases).max(0.0);
    }

    /// The report of `name`, created on first use.
    pub fn phase_mut(&mut self, name: &str) -> &mut PhaseReport {
        if let Some(i) = self.phases.iter().position(|p| p.name == name) {
            return &mut self.phases[i];
        }
        self.phases.push(PhaseReport {
            name: name.to_string(),
            ..Default::default()
        });
        self.phases.last_mut().expect("just pushed")
    }

    /// JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into())
    }

    /// The text rendering of a dry-run report: each phase's outcome, requests and files.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        if let Some(dir) = &self.dry_run_dir {
            out.push_str(&format!(
                "[dryrun] Files were written under {dir} (the real root {} was not touched)\n",
                self.root
            ));
        }
        for p in &self.phases {
            out.push_str(&format!(
                "[{}] {}{}\n",
                p.name,
                p.status,
                if p.reason.is_empty() {
                    String::new()
                } else {
                    format!(": {}", p.reason)
                }
            ));
            // The actions were printed as they happened, above; the summary adds what the audit
            // needs beside them: every request and every file.
            for r in &p.requests {
                out.push_str(&format!(
                    "    {} {} ({} as {}) [{}]\n",
                    r.method, r.path, r.verb, r.identity, r.outcome
                ));
            }
            for f in &p.files {
                match f.kind.as_str() {
                    "removed" => out.push_str(&format!("    remove {}\n", f.path)),
                    "symlink" => out.push_str(&format!(
                        "    link   {} -> {}\n",
                        f.path,
                        f.target.as_deref().unwrap_or("")
                    )),
                    _ => out.push_str(&format!(
                        "    write  {} mode {} {} bytes sha256 {}\n",
                        f.path, f.mode, f.size, f.sha256
                    )),
                }
            }
        }
        out
    }
}
