//! Human output: kubeadm-style `[phase] message` lines. With `-o json` they go to stderr so that
//! stdout carries exactly one JSON document.

use std::io::Write;

/// Where progress lines go.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    to_stderr: bool,
    quiet: bool,
    actions_only: bool,
}

impl Output {
    /// Lines to stdout (text mode) or stderr (json mode).
    pub fn new(json: bool) -> Output {
        Output {
            to_stderr: json,
            quiet: false,
            actions_only: false,
        }
    }

    /// No progress lines at all (library use, benchmarks).
    pub fn quiet() -> Output {
        Output {
            to_stderr: true,
            quiet: true,
            actions_only: false,
        }
    }

    /// The same, without the per-phase "already done" and "skipped" lines: only what a run does
    /// (for `renew --watch`, which runs again and again).
    pub fn actions_only(self) -> Output {
        Output {
            actions_only: true,
            ..self
        }
    }

    /// A phase's status line (`already done: …`, `skipped: …`), left out in actions-only mode.
    pub fn status(&self, tag: &str, msg: impl std::fmt::Display) {
        if !self.actions_only {
            self.say(tag, msg);
        }
    }

    /// `[tag] message`.
    pub fn say(&self, tag: &str, msg: impl std::fmt::Display) {
        if self.quiet {
            return;
        }
        let line = format!("[{tag}] {msg}\n");
        if self.to_stderr {
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        } else {
            let _ = std::io::stdout().lock().write_all(line.as_bytes());
        }
    }

    /// `[tag] WARNING: message`, always to stderr.
    pub fn warn(&self, tag: &str, msg: impl std::fmt::Display) {
        if self.quiet {
            return;
        }
        let _ = writeln!(std::io::stderr().lock(), "[{tag}] WARNING: {msg}");
    }
}
