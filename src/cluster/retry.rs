//! Which failures are worth another try, and how long to wait.

use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};

use super::{Cluster, Req};
use crate::error::{Error, ErrorKind};

/// Backoff parameters and the per-call budget.
#[derive(Debug, Clone)]
pub struct Policy {
    /// First delay.
    pub base: Duration,
    /// Largest delay.
    pub cap: Duration,
    /// Give up once the next attempt would start after this much time.
    pub budget: Duration,
    /// One attempt may take this long.
    pub attempt_timeout: Duration,
}

impl Policy {
    /// The default policy with `budget`.
    pub fn with_budget(budget: Duration) -> Policy {
        Policy {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(5),
            budget,
            attempt_timeout: Duration::from_secs(20),
        }
    }

    /// Delay before attempt `attempt + 1`: "full jitter" over a capped exponential
    /// (uniform in [0, min(cap, base·2^(attempt-1))]), but never less than the server's
    /// Retry-After.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
        let ceiling = exp.min(self.cap);
        let jittered = ceiling.mul_f64(unit_random());
        match retry_after {
            Some(ra) => ra.max(jittered),
            None => jittered.max(Duration::from_millis(10)),
        }
    }
}

fn unit_random() -> f64 {
    let mut b = [0u8; 4];
    let _ = SystemRandom::new().fill(&mut b);
    f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX)
}

/// What to do about a failed call.
pub enum Failure {
    /// Try again (after at least `retry_after`).
    Transient {
        /// One-line cause for the log.
        cause: String,
        /// The server's Retry-After.
        retry_after: Option<Duration>,
    },
    /// 409: the caller decides.
    Conflict(Error),
    /// Give up now with this error.
    Final(Error),
}

/// A kube error on one line (its Display chains sources and sometimes newlines).
pub fn one_line(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s.replace(['\n', '\r'], " ")
}

/// The error for an attempt that exceeded its own timeout.
pub fn timeout_error(after: Duration) -> kube::Error {
    kube::Error::Service(format!("no answer within {after:?}").into())
}

/// Classifies a failed call.
pub fn classify(err: &kube::Error, cluster: &Cluster, req: &Req<'_>) -> Failure {
    let who = cluster.identity();
    match err {
        kube::Error::Api(status) if status.reason == NOT_A_STATUS => {
            Failure::Final(not_kubernetes(
                cluster,
                req,
                &format!(
                    "answered {} with a body that is not a Kubernetes Status",
                    status.code
                ),
            ))
        }
        kube::Error::Api(status) => {
            let code = status.code;
            let msg = status.message.replace(['\n', '\r'], " ");
            match code {
                429 => Failure::Transient {
                    cause: format!("429 {}", status.reason),
                    retry_after: status
                        .details
                        .as_ref()
                        .map(|d| d.retry_after_seconds)
                        .filter(|s| *s > 0)
                        .map(|s| Duration::from_secs(u64::from(s))),
                },
                500 | 502 | 503 | 504 => Failure::Transient {
                    cause: format!("{code} {msg}"),
                    retry_after: None,
                },
                401 => Failure::Final(Error::new(
                    ErrorKind::Rejected,
                    format!(
                        "the API server rejected the {who} credentials (401 Unauthorized) on {} {}; {}",
                        req.verb,
                        req.resource,
                        hint_401(who)
                    ),
                )),
                403 => Failure::Final(Error::new(
                    ErrorKind::Rejected,
                    format!(
                        "the API server forbade {} {} as {who} (403): {msg}; {}",
                        req.verb,
                        req.resource,
                        hint_403(who)
                    ),
                )),
                409 => Failure::Conflict(Error::new(
                    ErrorKind::Rejected,
                    format!("409 Conflict: {msg}"),
                )),
                422 | 400 => Failure::Final(Error::new(
                    ErrorKind::Rejected,
                    format!(
                        "the API server refused {} {} as invalid ({code}): {msg}",
                        req.verb, req.resource
                    ),
                )),
                _ => Failure::Final(Error::new(
                    ErrorKind::Rejected,
                    format!(
                        "{} {} as {who} failed with {code} {}: {msg}",
                        req.verb, req.resource, status.reason
                    ),
                )),
            }
        }
        other => {
            let text = one_line(other);
            if is_tls_verification_failure(&text) {
                Failure::Final(Error::untrusted(format!(
                    "the server at {} is not the cluster bootlet trusts: its TLS certificate failed verification against the trusted CA ({}); no credential was sent. Check the server address and the CA (--discovery-token-ca-cert-hash, the kubeconfig's certificate-authority)",
                    cluster.server(),
                    short_tls_reason(&text)
                )))
            } else if matches!(other, kube::Error::SerdeError(_)) {
                Failure::Final(not_kubernetes(
                    cluster,
                    req,
                    "answered with something that is not a Kubernetes API object",
                ))
            } else if text.contains("InvalidContentType") || text.contains("corrupt message") {
                // Not worth a retry: a server that answers a TLS hello in plain text always will.
                Failure::Final(Error::untrusted(format!(
                    "the server at {} does not speak TLS (it answered the TLS handshake in plain text, perhaps HTTP); a Kubernetes API server serves HTTPS: check the endpoint's port (kube-apiserver's is usually 6443)",
                    cluster.server()
                )))
            } else {
                Failure::Transient {
                    cause: text,
                    retry_after: None,
                }
            }
        }
    }
}

/// The reason kube gives an error answer whose body is not a `metav1.Status`.
const NOT_A_STATUS: &str = "Failed to parse error data";

/// A server that answers, but not as a Kubernetes API server does.
fn not_kubernetes(cluster: &Cluster, req: &Req<'_>, what: &str) -> Error {
    Error::invalid(format!(
        "the server at {} {what} to {} {}: it is not a Kubernetes API server (a web server, a proxy, another service on that port?); check the endpoint: kube-apiserver's host and port (usually 6443)",
        cluster.server(),
        req.verb,
        req.resource
    ))
}

fn is_tls_verification_failure(text: &str) -> bool {
    [
        "invalid peer certificate",
        "UnknownIssuer",
        "certificate verify",
        "NotValidForName",
        "BadSignature",
        "CertExpired",
    ]
    .iter()
    .any(|m| text.contains(m))
}

fn short_tls_reason(text: &str) -> String {
    text.split(": ")
        .find(|p| p.contains("invalid peer certificate"))
        .unwrap_or("certificate rejected")
        .to_string()
}

fn hint_401(who: &str) -> &'static str {
    match who {
        "bootstrap token" => {
            "the token is unknown, expired, lacks usage-bootstrap-authentication, or has an invalid auth-extra-groups entry; create a new one on the control plane (bootlet token create, or kubeadm token create)"
        }
        "node" => {
            "the node's client certificate is not accepted; delete the node credentials and rerun the join"
        }
        _ => "check the kubeconfig's credentials",
    }
}

fn hint_403(who: &str) -> &'static str {
    match who {
        "bootstrap token" => {
            "the token's group lacks the bootstrapper RBAC bindings; run `bootlet phase secret --admin-kubeconfig ...` to create them"
        }
        _ => "grant the permission or use other credentials",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_capped_jittered_and_honour_retry_after() {
        let p = Policy::with_budget(Duration::from_secs(60));
        for attempt in 1..30 {
            let d = p.delay(attempt, None);
            assert!(d <= p.cap, "{attempt}: {d:?}");
        }
        assert!(p.delay(1, Some(Duration::from_secs(3))) >= Duration::from_secs(3));
        let samples: std::collections::BTreeSet<_> = (0..20).map(|_| p.delay(5, None)).collect();
        assert!(samples.len() > 1, "jitter varies the delay");
    }
}
