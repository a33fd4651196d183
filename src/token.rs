//! Bootstrap tokens: `[a-z0-9]{6}.[a-z0-9]{16}`, the id public, the secret half never printed.
//!
//! Format and generation follow `k8s.io/cluster-bootstrap/token/util/helpers.go`: the alphabet is
//! `0123456789abcdefghijklmnopqrstuvwxyz`, bytes come from the OS CSPRNG and bytes `>= 252` are
//! rejected (256 mod 36 = 4) so that `b % 36` is uniform.

use std::fmt;

use ring::rand::{SecureRandom, SystemRandom};

use crate::error::{Error, Result};
use crate::secret::{REDACTED, SecretString};

/// The token format, as shown in errors.
pub const TOKEN_FORMAT: &str =
    "[a-z0-9]{6}.[a-z0-9]{16} (a 6-character id, a dot, a 16-character secret)";

const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
const ID_LEN: usize = 6;
const SECRET_LEN: usize = 16;

/// Default `auth-extra-groups` of kubeadm's node tokens.
pub const DEFAULT_NODE_TOKEN_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";

/// A bootstrap token. `Display` and `Debug` show only the id.
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    id: String,
    secret: SecretString,
}

impl BootstrapToken {
    /// Parses and validates `id.secret`. The error never echoes the input (it may be a real secret
    /// with a typo), only its shape.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        let (id, secret) = text.split_once('.').ok_or_else(|| {
            Error::invalid(format!(
                "bad bootstrap token: no '.' between id and secret; expected {TOKEN_FORMAT}"
            ))
        })?;
        // Say which rule the part breaks, by its shape only: its length, or the class of the
        // characters it holds (an upper-case token is the common paste error).
        let check = |part: &str, len: usize, what: &str| -> Result<()> {
            let count = part.chars().count();
            let problem = if count != len {
                format!("must be {len} characters (got {count})")
            } else if part.bytes().any(|b| b.is_ascii_uppercase()) {
                "must be lower-case: it holds upper-case letters".to_string()
            } else if !part
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            {
                "may hold only the characters [a-z0-9]".to_string()
            } else {
                return Ok(());
            };
            Err(Error::invalid(format!(
                "bad bootstrap token: the {what} {problem}; expected {TOKEN_FORMAT}"
            )))
        };
        check(id, ID_LEN, "id")?;
        check(secret, SECRET_LEN, "secret")?;
        Ok(BootstrapToken {
            id: id.to_string(),
            secret: SecretString::new(secret.to_string()),
        })
    }

    /// Generates a token with the OS CSPRNG.
    pub fn generate() -> Result<Self> {
        let id = random_string(ID_LEN)?;
        let secret = random_string(SECRET_LEN)?;
        Ok(BootstrapToken {
            id,
            secret: SecretString::new(secret),
        })
    }

    /// The public id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The secret half.
    pub fn secret(&self) -> &SecretString {
        &self.secret
    }

    /// `id.secret`, for the places that must carry the whole token (bearer header, 0600 files).
    pub fn expose_full(&self) -> String {
        format!("{}.{}", self.id, self.secret.expose())
    }

    /// The user name the token authenticates as.
    pub fn user_name(&self) -> String {
        format!("system:bootstrap:{}", self.id)
    }

    /// The Secret's name in kube-system.
    pub fn secret_name(&self) -> String {
        format!("bootstrap-token-{}", self.id)
    }
}

impl fmt::Display for BootstrapToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{REDACTED}", self.id)
    }
}

impl fmt::Debug for BootstrapToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BootstrapToken({}.{REDACTED})", self.id)
    }
}

fn random_string(len: usize) -> Result<String> {
    let rng = SystemRandom::new();
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 32];
    while out.len() < len {
        rng.fill(&mut buf)
            .map_err(|_| Error::internal("the OS random number generator failed"))?;
        for b in buf {
            if out.len() == len {
                break;
            }
            if b < 252 {
                out.push(ALPHABET[(b % 36) as usize] as char);
            }
        }
    }
    Ok(out)
}

/// Validates an `auth-extra-groups` entry with the authenticator's pattern
/// `\Asystem:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]\z` (cluster-bootstrap token/api/types.go).
pub fn valid_extra_group(group: &str) -> bool {
    let Some(rest) = group.strip_prefix("system:bootstrappers:") else {
        return false;
    };
    let bytes = rest.as_bytes();
    let Some((last, body)) = bytes.split_last() else {
        return false;
    };
    body.len() <= 255
        && (last.is_ascii_lowercase() || last.is_ascii_digit())
        && body
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b':' || *b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_and_rejects_bad_shapes() {
        let t = BootstrapToken::parse("abcdef.0123456789abcdef").unwrap();
        assert_eq!(t.id(), "abcdef");
        assert_eq!(t.expose_full(), "abcdef.0123456789abcdef");
        for bad in [
            "",
            "abcdef",
            "abcde.zyxwvutsrq987654",
            "abcdef.zyxwvutsrq98765",
            "ABCDEF.zyxwvutsrq987654",
            "abcdef.zyxwvutsrq98765Z",
            "abc_ef.zyxwvutsrq987654",
            "abcdef.zyxwvutsrq987654.x",
        ] {
            let e = BootstrapToken::parse(bad).unwrap_err();
            assert!(
                e.message().contains("[a-z0-9]{6}.[a-z0-9]{16}"),
                "{bad}: {e}"
            );
            assert!(!e.message().contains("zyxwvutsrq9"), "echoed secret: {e}");
        }
    }

    #[test]
    fn display_and_debug_hide_the_secret() {
        let t = BootstrapToken::parse("abcdef.0123456789abcdef").unwrap();
        assert_eq!(t.to_string(), "abcdef.<redacted>");
        assert!(!format!("{t:?}").contains("0123456789"));
    }

    #[test]
    fn generated_tokens_are_valid_and_differ() {
        let a = BootstrapToken::generate().unwrap();
        let b = BootstrapToken::generate().unwrap();
        BootstrapToken::parse(&a.expose_full()).unwrap();
        assert_ne!(a.expose_full(), b.expose_full());
    }

    #[test]
    fn extra_group_pattern() {
        assert!(valid_extra_group(DEFAULT_NODE_TOKEN_GROUP));
        assert!(!valid_extra_group("system:bootstrappers:"));
        assert!(!valid_extra_group("system:bootstrappers:bad-"));
        assert!(!valid_extra_group("system:masters"));
        assert!(!valid_extra_group("system:bootstrappers:UPPER"));
    }
}
