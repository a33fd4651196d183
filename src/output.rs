//! Human output: kubeadm-style `[phase] message` lines. With `-o json` they go to stderr so that
//! stdout carries exactly one JSON document.

use std::io::Write;

/// Where progress lines go.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    to_stderr: bool,
    quiet: bool,
}

impl Output {
    /// Lines to stdout (text mode) or stderr (json mode).
    pub fn new(json: bool) -> Output {
        Output {
            to_stderr: json,
            quiet: false,
        }
    }

    /// No progress lines at all (library use, benchmarks).
    pub fn quiet() -> Output {
        Output {
            to_stderr: true,
            quiet: true,
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
