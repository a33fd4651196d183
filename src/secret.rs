//! Values that must never reach a log, an error message, a report or `Debug` output.
//!
//! [`Secret`] has no `Display` and a redacting `Debug`; the only way to the bytes is
//! [`Secret::expose`], which makes every use greppable.

use std::fmt;

/// The text printed in place of a secret.
pub const REDACTED: &str = "<redacted>";

/// A value that is redacted wherever it could be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a secret value.
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The secret itself. Call sites are the audit list of where secrets go.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret(value)
    }
}

/// Secret text, such as a token's secret half or a PEM private key.
pub type SecretString = Secret<String>;

fn is_token_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// Byte ranges of the secret halves of token-shaped words (`[a-z0-9]{6}\.[a-z0-9]{16}` not
/// inside a longer run of such characters) in `text`.
fn token_secrets(text: &str) -> Vec<std::ops::Range<usize>> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 23 <= b.len() {
        let starts_word = i == 0 || !is_token_char(b[i - 1]);
        let shaped = starts_word
            && b[i..i + 6].iter().all(|c| is_token_char(*c))
            && b[i + 6] == b'.'
            && b[i + 7..i + 23].iter().all(|c| is_token_char(*c))
            && (i + 23 == b.len() || !is_token_char(b[i + 23]));
        if shaped {
            out.push(i + 7..i + 23);
            i += 23;
        } else {
            i += 1;
        }
    }
    out
}

/// Whether `text` holds something shaped like a bootstrap token.
pub fn contains_token(text: &str) -> bool {
    !token_secrets(text).is_empty()
}

/// `text` with the secret half of every token-shaped word replaced by [`REDACTED`]: the last
/// line of defence for messages built from values a user typed into the wrong place.
pub fn redact_tokens(text: &str) -> String {
    let ranges = token_secrets(text);
    if ranges.is_empty() {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for r in ranges {
        out.push_str(&text[at..r.start]);
        out.push_str(REDACTED);
        at = r.end;
    }
    out.push_str(&text[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_shaped_words_are_found_and_redacted() {
        let t = "abcdef.0123456789abcdef";
        assert!(contains_token(t));
        assert!(contains_token(&format!("https://{t}:6443")));
        assert_eq!(
            redact_tokens(&format!("endpoint \"{t}\" and /x/{t}")),
            "endpoint \"abcdef.<redacted>\" and /x/abcdef.<redacted>"
        );
        for not in [
            "abcdefg.0123456789abcdef",
            "abcdef.0123456789abcdefg",
            "ABCDEF.0123456789abcdef",
            "edge-1.example.com",
        ] {
            assert!(!contains_token(not), "{not}");
            assert_eq!(redact_tokens(not), not);
        }
    }

    #[test]
    fn debug_is_redacted() {
        let s = SecretString::new("hunter2hunter2".into());
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(format!("{:?}", Some(&s)), format!("Some({REDACTED})"));
        assert_eq!(s.expose(), "hunter2hunter2");
    }
}
