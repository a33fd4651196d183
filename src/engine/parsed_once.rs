//! Inputs parsed once per run: the checks of several phases read the same file (the bootstrap
//! kubeconfig, the cluster record), which is read again every time but parsed again only when its
//! text changed.

use std::sync::Mutex;

use crate::error::Result;

/// Values parsed from text, by input (its path), kept while the text's digest stays the same. The
/// digest, not the text, is kept: a kubeconfig's text holds credentials.
#[derive(Debug)]
pub struct ParsedOnce<T> {
    held: Mutex<Vec<Parsed<T>>>,
}

#[derive(Debug)]
struct Parsed<T> {
    input: String,
    sha256: String,
    value: T,
}

impl<T> Default for ParsedOnce<T> {
    fn default() -> Self {
        ParsedOnce {
            held: Mutex::new(Vec::new()),
        }
    }
}

impl<T: Clone> ParsedOnce<T> {
    /// The value `parse` makes of `text`, read from `input`: the one parsed earlier from the same
    /// text, or a new one (a failed parse is not kept).
    pub fn get(&self, input: &str, text: &str, parse: impl FnOnce() -> Result<T>) -> Result<T> {
        let sha256 = crate::pki::sha256_hex(text.as_bytes());
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = held.iter().find(|p| p.input == input && p.sha256 == sha256) {
            return Ok(p.value.clone());
        }
        let value = parse()?;
        held.retain(|p| p.input != input);
        held.push(Parsed {
            input: input.to_string(),
            sha256,
            value: value.clone(),
        });
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn parses_again_only_when_the_text_changes_and_keeps_no_failure() {
        let memo = ParsedOnce::<String>::default();
        let mut parses = 0;
        let mut parse = |t: &str| {
            parses += 1;
            Ok(t.to_uppercase())
        };
        assert_eq!(memo.get("/a", "x", || parse("x")).unwrap(), "X");
        assert_eq!(memo.get("/a", "x", || parse("x")).unwrap(), "X");
        assert_eq!(memo.get("/a", "y", || parse("y")).unwrap(), "Y");
        assert_eq!(memo.get("/b", "y", || parse("y")).unwrap(), "Y");
        assert_eq!(parses, 3, "same input and text: parsed once");
        assert!(memo.get("/c", "z", || Err(Error::invalid("bad"))).is_err());
        let again = memo.get("/c", "z", || Ok("Z".to_string())).unwrap();
        assert_eq!(again, "Z", "a failed parse is not remembered");
    }
}
