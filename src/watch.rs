//! `bootlet renew --watch`: the node's rotation loop, the kubelet certificate manager's job done
//! by bootlet. Renew what is due, sleep until the earliest rotation deadline, repeat; one line per
//! action; an API outage is retried with backoff (2 s doubling to 5 min, jittered, as the kubelet
//! backs off `wait.Backoff{Duration: 2s, Factor: 2, Jitter: 0.1}`); SIGTERM or SIGINT ends it
//! cleanly, also in the middle of a renewal, which the next start resumes (the key and the CSR
//! name are in the journal).

use std::time::Duration;

use crate::engine::{Command, execute};
use crate::error::{Error, Result};
use crate::output::Output;
use crate::settings::{OutputFormat, Settings};

/// Shortest pause between two runs, so that a certificate that is due as soon as it is issued
/// (a lifetime shorter than the signer's 5-minute backdate allows) cannot make the loop spin.
const MIN_PAUSE: Duration = Duration::from_secs(5);
/// Longest sleep: the loop looks again at least this often (files may change under it).
const MAX_SLEEP: Duration = Duration::from_secs(6 * 3600);
/// Longest retry backoff after a failure.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

fn backoff(failures: u32) -> Duration {
    let doublings = failures.max(1).saturating_sub(1).min(16);
    let base = Duration::from_secs(2).saturating_mul(1u32 << doublings);
    let base = base.min(MAX_BACKOFF);
    let jitter = ring_random_fraction() * 0.1;
    base.mul_f64(1.0 + jitter)
}

fn ring_random_fraction() -> f64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 4];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    u32::from_be_bytes(b) as f64 / u32::MAX as f64
}

/// How long to sleep until the earliest rotation deadline, and a line saying when that is.
fn until_next_deadline(settings: &Settings) -> (Duration, String) {
    match crate::expiration::credentials(settings)
        .ok()
        .and_then(|rows| crate::expiration::earliest_deadline(&rows))
    {
        Some(at) => {
            let secs = (at - crate::pki::cert::now_unix()).max(0) as u64;
            let wait = Duration::from_secs(secs).clamp(MIN_PAUSE, MAX_SLEEP);
            (
                wait,
                format!(
                    "Next rotation due at {}; sleeping {}",
                    crate::pki::cert::fmt_unix(at),
                    crate::expiration::residual(wait.as_secs() as i64)
                ),
            )
        }
        None => (
            MAX_SLEEP,
            "No certificate to watch found; looking again later".into(),
        ),
    }
}

/// Runs the loop until SIGTERM or SIGINT.
pub async fn run(settings: Settings) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())
        .map_err(|e| Error::internal(format!("cannot listen for SIGTERM: {e}")))?;
    let mut int = signal(SignalKind::interrupt())
        .map_err(|e| Error::internal(format!("cannot listen for SIGINT: {e}")))?;
    let out = Output::new(settings.output == OutputFormat::Json).actions_only();
    out.say(
        "renew",
        format!(
            "Watching the certificates under {}: each is renewed at its rotation deadline (70-90 % of its lifetime)",
            settings.root.display()
        ),
    );
    let mut failures = 0u32;
    loop {
        let run = execute(Command::Run("renew".into()), settings.clone(), out);
        let outcome = tokio::select! {
            o = run => o,
            _ = term.recv() => return stopped(out, "SIGTERM"),
            _ = int.recv() => return stopped(out, "SIGINT"),
        };
        let (wait, line) = match &outcome.error {
            None => {
                failures = 0;
                until_next_deadline(&settings)
            }
            Some(e) => {
                failures += 1;
                let wait = backoff(failures);
                (
                    wait,
                    format!(
                        "Renewal failed ({}); retrying in {}s",
                        e.message(),
                        wait.as_secs()
                    ),
                )
            }
        };
        out.say("renew", line);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = term.recv() => return stopped(out, "SIGTERM"),
            _ = int.recv() => return stopped(out, "SIGINT"),
        }
    }
}

fn stopped(out: Output, signal: &str) -> Result<()> {
    out.say("renew", format!("Stopped ({signal})"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_two_seconds_to_five_minutes() {
        assert!((2.0..2.3).contains(&backoff(1).as_secs_f64()));
        assert!((4.0..4.5).contains(&backoff(2).as_secs_f64()));
        assert!((300.0..331.0).contains(&backoff(20).as_secs_f64()));
    }
}
