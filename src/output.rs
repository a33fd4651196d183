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
            stderr_write(&line);
        } else {
            stdout_write(&line);
        }
    }

    /// `[tag] message` on stderr: progress while waiting, retry notices. Not part of the report,
    /// and never on stdout (which carries the JSON document with `-o json`).
    pub fn progress(&self, tag: &str, msg: impl std::fmt::Display) {
        if self.quiet {
            return;
        }
        let tag = if tag.is_empty() { "bootlet" } else { tag };
        let _ = writeln!(std::io::stderr().lock(), "[{tag}] {msg}");
    }

    /// `[tag] WARNING: message`, always to stderr.
    pub fn warn(&self, tag: &str, msg: impl std::fmt::Display) {
        if self.quiet {
            return;
        }
        let _ = writeln!(std::io::stderr().lock(), "[{tag}] WARNING: {msg}");
    }
}

/// Writes `text` to stdout. A closed pipe (`bootlet graph | head -1`) ends the program quietly with
/// the status a shell gives a process killed by SIGPIPE (141), as other command-line tools end,
/// rather than panicking. Rust ignores SIGPIPE (so that sockets report EPIPE), hence the check.
pub fn stdout_write(text: &str) {
    let mut out = std::io::stdout().lock();
    let written = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    if let Err(e) = written
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(141);
    }
}

/// Writes `text` to stderr, ignoring errors (nowhere left to report them).
pub fn stderr_write(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// `println!` that ends quietly on a closed pipe (see [`stdout_write`]).
#[macro_export]
macro_rules! outln {
    () => { $crate::output::stdout_write("\n") };
    ($($t:tt)*) => { $crate::output::stdout_write(&format!("{}\n", format_args!($($t)*))) };
}

/// `print!` that ends quietly on a closed pipe.
#[macro_export]
macro_rules! out {
    ($($t:tt)*) => { $crate::output::stdout_write(&format!($($t)*)) };
}

/// `eprintln!` that never panics.
#[macro_export]
macro_rules! errln {
    ($($t:tt)*) => { $crate::output::stderr_write(&format!("{}\n", format_args!($($t)*))) };
}

/// `eprint!` that never panics.
#[macro_export]
macro_rules! err {
    ($($t:tt)*) => { $crate::output::stderr_write(&format!($($t)*)) };
}

/// `text` with every control character (a newline, a terminal escape) written as its escape, so
/// that text from elsewhere (a CSR's CN, a token's description) prints as one line that says what
/// it says.
pub fn escape_controls(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}
