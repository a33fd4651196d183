//! preflight: named checks, each ignorable by name (or `all`), each failure saying what to do.
//! Check names follow kubeadm's where kubeadm has one (`FileAvailable--etc-kubernetes-kubelet.conf`,
//! and the machine checks of `machine_checks`: `Port-10250`, `CRI`, …); leftover files are judged resume-aware: what an earlier bootlet run of this same
//! join wrote is expected, only foreign or contradictory files are errors.

use super::Check;
use super::cluster_record::ClusterRecord;
use super::credentials::{PairState, installed_client};
use crate::engine::Ctx;
use crate::error::{Error, ErrorKind, Result};

/// Phase check: preflight keeps nothing, so it is never done on its own account; the runner
/// counts it done once every later phase is.
pub async fn check(_cx: &mut Ctx) -> Result<Check> {
    Ok(Check::NotDone("checks run before any phase acts".into()))
}

struct Outcome {
    name: String,
    problem: Option<String>,
}

/// The names of all checks for this run, for `--ignore-preflight-errors` validation.
pub fn check_names(cx: &Ctx) -> Vec<String> {
    let mut names = vec![
        "TokenFormat".to_string(),
        "DiscoverySource".to_string(),
        "PathsWritable".to_string(),
        file_available_name(cx.layout.path("kubeconfig")),
        "SystemClock".to_string(),
    ];
    names.extend(super::machine_checks::names());
    if let Some(ca) = cx.layout.get("ca_cert") {
        names.push(file_available_name(ca));
    }
    names
}

fn file_available_name(inside: &str) -> String {
    format!("FileAvailable-{}", inside.replace('/', "-"))
}

/// Checks that ignoring cannot help: the join cannot go on without what they check, so
/// `--ignore-preflight-errors` does not downgrade them and the hint never suggests it.
const UNIGNORABLE: [&str; 2] = ["TokenFormat", "DiscoverySource"];

/// A preflight finding: the check's name, its problem, and whether it is ignored this run.
pub struct Finding {
    /// Check name (what `--ignore-preflight-errors` takes).
    pub name: String,
    /// What is wrong.
    pub problem: String,
    /// Downgraded to a warning by `--ignore-preflight-errors`.
    pub ignored: bool,
}

impl Finding {
    /// Whether ignoring the check could let the run go on.
    pub fn ignorable(&self) -> bool {
        !UNIGNORABLE.contains(&self.name.as_str())
    }
}

/// Every check's problem this run, without side effects (`plan` shows them).
pub fn findings(cx: &mut Ctx) -> Result<Vec<Finding>> {
    let known: Vec<String> = check_names(cx)
        .iter()
        .map(|n| n.to_ascii_lowercase())
        .collect();
    for name in &cx.settings.ignore_preflight_errors {
        if name != "all" && !known.contains(name) {
            return Err(Error::usage(format!(
                "--ignore-preflight-errors: unknown check {name:?}; checks are: {}, or all",
                check_names(cx).join(", ")
            )));
        }
    }
    let mut outcomes = vec![
        token_format(cx),
        discovery_source(cx),
        paths_writable(cx),
        leftover_kubeconfig(cx),
        system_clock(),
    ];
    outcomes.extend(
        super::machine_checks::outcomes(cx)
            .into_iter()
            .map(|(name, problem)| Outcome { name, problem }),
    );
    if cx.layout.get("ca_cert").is_some() {
        outcomes.push(leftover_ca(cx)?);
    }
    Ok(outcomes
        .into_iter()
        .filter_map(|o| {
            let problem = o.problem?;
            let unignorable = UNIGNORABLE.contains(&o.name.as_str());
            let ignored = !unignorable
                && cx
                    .settings
                    .ignore_preflight_errors
                    .iter()
                    .any(|i| i == "all" || *i == o.name.to_ascii_lowercase());
            Some(Finding {
                name: o.name,
                problem,
                ignored,
            })
        })
        .collect())
}

/// The one-line error for fatal findings: the fix for each, and the ignore hint only for checks
/// whose ignoring could help.
pub fn failure(fatal: &[&Finding]) -> Error {
    let names: Vec<&str> = fatal.iter().map(|f| f.name.as_str()).collect();
    let ignorable: Vec<&str> = fatal
        .iter()
        .filter(|f| f.ignorable())
        .map(|f| f.name.as_str())
        .collect();
    let hint = if ignorable.is_empty() {
        String::new()
    } else {
        format!(
            ", or if you know what you are doing make a check non-fatal with --ignore-preflight-errors={}",
            ignorable.join(",")
        )
    };
    Error::new(
        ErrorKind::Preflight,
        format!(
            "preflight checks failed: {}; fix what each [ERROR] line says{hint}",
            names.join(", ")
        ),
    )
}

/// Runs the checks.
pub async fn run(cx: &mut Ctx) -> Result<()> {
    cx.act("Running pre-flight checks");
    for warning in super::machine_checks::warnings(cx) {
        cx.warn(warning);
    }
    let found = findings(cx)?;
    let mut fatal = Vec::new();
    for f in &found {
        if f.ignored {
            cx.warn(format!(
                "[{}] {} (ignored by --ignore-preflight-errors)",
                f.name, f.problem
            ));
        } else {
            let note = if !f.ignorable() && !cx.settings.ignore_preflight_errors.is_empty() {
                " (this check cannot be ignored: the join cannot go on without it)"
            } else {
                ""
            };
            cx.out.say(
                "preflight",
                format!("\t[ERROR {}]: {}{note}", f.name, f.problem),
            );
            fatal.push(f);
        }
    }
    if fatal.is_empty() {
        cx.act("All pre-flight checks passed");
        return Ok(());
    }
    Err(failure(&fatal))
}

fn outcome(name: &str, problem: Option<String>) -> Outcome {
    Outcome {
        name: name.to_string(),
        problem,
    }
}

fn token_format(cx: &mut Ctx) -> Outcome {
    let problem = match cx.token() {
        Ok(_) => {
            if matches!(
                cx.settings.token_source,
                Some(crate::settings::TokenSource::Flag(_))
            ) {
                cx.warn("a token given with --token is visible to other users (ps, shell history); prefer --token-file FILE, --token-file - (stdin) or BOOTLET_TOKEN");
            }
            None
        }
        Err(e) => Some(e.message().to_string()),
    };
    outcome("TokenFormat", problem)
}

fn discovery_source(cx: &Ctx) -> Outcome {
    let s = &cx.settings;
    let have_record = cx.world.exists(&ClusterRecord::path(cx));
    let problem = if s.discovery_file.is_some()
        || s.bootstrap_kubeconfig.is_some()
        || s.admin_kubeconfig.is_some()
    {
        None
    } else if s.endpoint.is_some() {
        if s.ca_pins.is_empty() && !s.unsafe_skip_ca_verification {
            Some("token discovery needs --discovery-token-ca-cert-hash sha256:<hex> (get it on the control plane with `bootlet ca-pin /etc/kubernetes/pki/ca.crt`), or --discovery-token-unsafe-skip-ca-verification".to_string())
        } else {
            None
        }
    } else if have_record || cx.world.exists(cx.layout.path("bootstrap_kubeconfig")) {
        None
    } else {
        Some("no way to find the cluster: give API_SERVER_ENDPOINT with a token and --discovery-token-ca-cert-hash, or --discovery-file, --bootstrap-kubeconfig or --admin-kubeconfig".to_string())
    };
    outcome("DiscoverySource", problem)
}

fn paths_writable(cx: &Ctx) -> Outcome {
    let mut dirs = vec![cx.layout.path("state"), cx.layout.path("config_dir")];
    if let Some(p) = cx.layout.get("pki_dir") {
        dirs.push(p);
    }
    let mut problems = Vec::new();
    for d in dirs {
        let host = cx.world.write_host_path(d);
        let Some(probe) = host.ancestors().find(|p| p.exists()) else {
            continue;
        };
        // access(2), not a test file: the check must not change anything (`plan` runs it).
        if rustix::fs::access(
            probe,
            rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
        )
        .is_err()
        {
            problems.push(format!(
                "{} (nearest existing directory {} is not writable)",
                d,
                probe.display()
            ));
        }
    }
    let problem = (!problems.is_empty()).then(|| {
        format!(
            "cannot write {}; run as a user that may, or choose another --root/--state-dir",
            problems.join(", ")
        )
    });
    outcome("PathsWritable", problem)
}

fn leftover_kubeconfig(cx: &Ctx) -> Outcome {
    let path = cx.layout.path("kubeconfig");
    let name = file_available_name(path);
    if !cx.world.exists(path) {
        return outcome(&name, None);
    }
    let ours = cx.world.journal.phases.contains_key("write-files");
    let problem = match installed_client(cx) {
        Ok(PairState::Valid(_)) => None,
        _ if ours => None,
        Ok(PairState::Invalid(why)) => Some(format!(
            "{path} exists, was not written by this join, and its credentials do not verify ({why}); move it away (e.g. to {path}.bak) to join afresh"
        )),
        Ok(PairState::Absent) => Some(format!(
            "{path} exists but was not written by this join and its client credentials are missing; move it away to join afresh"
        )),
        Err(e) => Some(e.message().to_string()),
    };
    outcome(&name, problem)
}

fn leftover_ca(cx: &Ctx) -> Result<Outcome> {
    let path = cx.layout.path("ca_cert").to_string();
    let name = file_available_name(&path);
    let Some(existing) = cx.world.read(&path)? else {
        return Ok(outcome(&name, None));
    };
    let Some(rec) = ClusterRecord::load(cx)? else {
        return Ok(outcome(&name, None));
    };
    let problem = (existing != rec.ca.as_bytes()).then(|| {
        format!(
            "{path} holds a different CA than the cluster bootlet discovered ({}); if this node belonged to another cluster, move the file away",
            rec.ca_pin
        )
    });
    Ok(outcome(&name, problem))
}

fn system_clock() -> Outcome {
    let now = crate::pki::cert::now_unix();
    let built = crate::engine::manifest::BUILD_UNIX;
    let problem = (now + 86_400 < built).then(|| {
        format!(
            "the clock says {}, before this bootlet was built ({}); certificates would look not-yet-valid. Set the time (NTP: chronyd/systemd-timesyncd, or date -s)",
            crate::pki::cert::fmt_unix(now),
            crate::pki::cert::fmt_unix(built)
        )
    });
    outcome("SystemClock", problem)
}
