//! One error type for the whole tool: a one-line message that names the cause and the fix, a kind that
//! maps to a documented exit code, and optional detail lines shown only with `-v`.
//!
//! Messages are written for the person at the terminal. They never contain a token secret or key
//! material: callers build them from redacting types (see [`crate::secret`]).

use std::fmt;

/// What went wrong, coarse enough to script against. Each kind has a stable exit code
/// (`docs/exit-codes.md`, and `bootlet --help`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A bug or an unexpected condition; exit 1.
    Internal,
    /// Bad flags, a bad config file, an unknown phase name; exit 2.
    Usage,
    /// Preflight checks failed; exit 3.
    Preflight,
    /// Malformed input: token, CA pin, kubeconfig, PEM, journal, cluster-info; exit 4.
    InvalidInput,
    /// The server or a credential failed verification: CA pin, JWS, TLS, certificate checks; exit 5.
    Untrusted,
    /// The cluster refused: 401, 403, 422, a denied or failed CSR, a conflicting Secret; exit 6.
    Rejected,
    /// A wait ran out of time: discovery, approval; exit 7.
    Timeout,
    /// The cluster could not be reached or kept failing after retries; exit 8.
    Unavailable,
    /// The state on disk forbids going on: lock held, journal contradicts the world, foreign files; exit 9.
    Conflict,
    /// A phase was run alone without its inputs; exit 10.
    MissingInput,
    /// A filesystem operation failed; exit 11.
    Io,
}

impl ErrorKind {
    /// The process exit code for this kind.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::Internal => 1,
            ErrorKind::Usage => 2,
            ErrorKind::Preflight => 3,
            ErrorKind::InvalidInput => 4,
            ErrorKind::Untrusted => 5,
            ErrorKind::Rejected => 6,
            ErrorKind::Timeout => 7,
            ErrorKind::Unavailable => 8,
            ErrorKind::Conflict => 9,
            ErrorKind::MissingInput => 10,
            ErrorKind::Io => 11,
        }
    }

    /// Every kind, in exit-code order (for the docs table and its test).
    pub const ALL: [ErrorKind; 11] = [
        ErrorKind::Internal,
        ErrorKind::Usage,
        ErrorKind::Preflight,
        ErrorKind::InvalidInput,
        ErrorKind::Untrusted,
        ErrorKind::Rejected,
        ErrorKind::Timeout,
        ErrorKind::Unavailable,
        ErrorKind::Conflict,
        ErrorKind::MissingInput,
        ErrorKind::Io,
    ];

    /// A short label for tables and JSON output.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::Internal => "internal",
            ErrorKind::Usage => "usage",
            ErrorKind::Preflight => "preflight",
            ErrorKind::InvalidInput => "invalid-input",
            ErrorKind::Untrusted => "untrusted",
            ErrorKind::Rejected => "rejected",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Conflict => "conflict",
            ErrorKind::MissingInput => "missing-input",
            ErrorKind::Io => "io",
        }
    }

    /// What the kind means, for the exit-code table.
    pub fn meaning(self) -> &'static str {
        match self {
            ErrorKind::Internal => "unexpected failure (a bug); rerun with -v and report it",
            ErrorKind::Usage => "bad flags, config file or phase name",
            ErrorKind::Preflight => "preflight checks failed",
            ErrorKind::InvalidInput => {
                "malformed input: token, CA pin, kubeconfig, PEM, journal or cluster-info"
            }
            ErrorKind::Untrusted => {
                "verification failed: CA pin, JWS signature, TLS or issued certificate"
            }
            ErrorKind::Rejected => {
                "the cluster refused: 401/403/422, CSR denied or failed, conflicting token Secret"
            }
            ErrorKind::Timeout => "discovery or approval timed out",
            ErrorKind::Unavailable => "the API server was unreachable or kept failing",
            ErrorKind::Conflict => {
                "state conflict: lock held, journal contradicts the files, foreign files"
            }
            ErrorKind::MissingInput => {
                "a phase run alone lacks an input (another phase's output, or credentials it needs)"
            }
            ErrorKind::Io => "a file could not be read or written",
        }
    }
}

/// The error of every fallible bootlet operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    detail: Vec<String>,
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` whose one-line `message` names the cause and the fix.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let message: String = message.into();
        // One line is the contract: fold any newline a lower layer slipped in. A token typed into
        // the wrong flag must not come back in an error either.
        let message = crate::secret::redact_tokens(&message.replace(['\n', '\r'], " "));
        Error {
            kind,
            message,
            detail: Vec::new(),
        }
    }

    /// Adds a detail line, shown with `-v`.
    pub fn detail(mut self, line: impl fmt::Display) -> Self {
        self.detail
            .push(crate::secret::redact_tokens(&line.to_string()));
        self
    }

    /// The kind of error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The one-line message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The detail lines.
    pub fn details(&self) -> &[String] {
        &self.detail
    }

    /// Prefixes the message with context, keeping kind and detail.
    pub fn context(mut self, ctx: impl fmt::Display) -> Self {
        self.message = crate::secret::redact_tokens(&format!("{ctx}: {}", self.message));
        self
    }

    /// Shorthand constructors.
    pub fn usage(m: impl Into<String>) -> Self {
        Error::new(ErrorKind::Usage, m)
    }
    /// Malformed input.
    pub fn invalid(m: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidInput, m)
    }
    /// Verification failure.
    pub fn untrusted(m: impl Into<String>) -> Self {
        Error::new(ErrorKind::Untrusted, m)
    }
    /// Unexpected condition.
    pub fn internal(m: impl Into<String>) -> Self {
        Error::new(ErrorKind::Internal, m)
    }
    /// State conflict.
    pub fn conflict(m: impl Into<String>) -> Self {
        Error::new(ErrorKind::Conflict, m)
    }

    /// An I/O error on `path`, with the OS reason and a generic fix.
    pub fn io(action: &str, path: &std::path::Path, err: std::io::Error) -> Self {
        let fix = match err.kind() {
            std::io::ErrorKind::PermissionDenied => {
                "; run as a user that may write there, or choose another --root"
            }
            std::io::ErrorKind::NotFound => "; check the path",
            _ => "",
        };
        Error::new(
            ErrorKind::Io,
            format!("cannot {action} {}: {err}{fix}", path.display()),
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_distinct_and_nonzero() {
        let mut codes: Vec<i32> = ErrorKind::ALL.iter().map(|k| k.exit_code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), ErrorKind::ALL.len());
        assert!(codes.iter().all(|c| *c > 0));
    }

    #[test]
    fn messages_never_carry_a_token_secret() {
        let e = Error::usage("bad endpoint \"abcdef.0123456789abcdef\"")
            .context("x abcdef.0123456789abcdef");
        assert!(!e.message().contains("0123456789abcdef"), "{e}");
        assert!(e.message().contains("abcdef.<redacted>"), "{e}");
    }

    #[test]
    fn messages_stay_on_one_line() {
        let e = Error::invalid("first\nsecond");
        assert_eq!(e.message(), "first second");
    }
}
