//! Running the graph: decide each phase's status from the world, then run what is not done.
//!
//! A phase is *done* when its own check passes, or when every phase after it (transitively,
//! through `needs` and `after`) is done: its output has been used up, as the bootstrap kubeconfig
//! is once the node has its own credentials. That single rule makes a second `join` a no-op, lets
//! a resume skip exactly what still holds, and makes preflight (which writes nothing) run whenever
//! anything else will.

use std::collections::BTreeSet;
use std::time::Instant;

mod statuses;

use super::context::Ctx;
use super::graph::PhaseGraph;
use super::journal::Journal;
use super::report::Report;
use super::world::World;
use crate::error::{Error, Result};
use crate::output::Output;
use crate::phases::{self, Check};
use crate::settings::Settings;
use statuses::{Status, downstream_of, evaluate, recheck, show_plan};

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A whole workflow (`join`, `renew`, `reset`).
    Run(String),
    /// One phase of a workflow.
    Phase {
        /// The workflow.
        workflow: String,
        /// The phase.
        name: String,
    },
    /// Show a workflow's statuses, change nothing.
    Plan(String),
}

impl Command {
    /// The whole join workflow.
    pub fn join() -> Command {
        Command::Run("join".into())
    }

    /// One phase of the join workflow.
    pub fn join_phase(name: &str) -> Command {
        Command::Phase {
            workflow: "join".into(),
            name: name.into(),
        }
    }

    /// The workflow the command works on.
    pub fn workflow(&self) -> &str {
        match self {
            Command::Run(w) | Command::Plan(w) | Command::Phase { workflow: w, .. } => w,
        }
    }

    /// Whether it is a `plan`.
    pub fn is_plan(&self) -> bool {
        matches!(self, Command::Plan(_))
    }

    /// The command as the operator types it (`join`, `phase secret`, `plan renew`).
    pub fn label(&self) -> String {
        match self {
            Command::Run(w) => w.clone(),
            Command::Phase { workflow, name } if workflow == "join" => format!("phase {name}"),
            Command::Phase { workflow, name } => format!("phase {name} --workflow {workflow}"),
            Command::Plan(w) if w == "join" => "plan".into(),
            Command::Plan(w) => format!("plan {w}"),
        }
    }
}

/// The result of a run.
#[derive(Debug)]
pub struct Outcome {
    /// What happened.
    pub report: Report,
    /// The error, if the run failed.
    pub error: Option<Error>,
}

/// Runs `command` with `settings`.
pub async fn execute(command: Command, settings: Settings, out: Output) -> Outcome {
    execute_since(command, settings, out, Instant::now()).await
}

/// Runs `command` with `settings`, counting the report's `total_ms` from `started` (the start of
/// the command-line command, so that argument parsing and settings are in the total too).
pub async fn execute_since(
    command: Command,
    settings: Settings,
    out: Output,
    started: Instant,
) -> Outcome {
    let mut report = Report {
        report_version: super::report::REPORT_VERSION,
        command: command.label(),
        dry_run: settings.dry_run,
        root: settings.root.display().to_string(),
        layout: settings.layout.name().into(),
        node_name: settings.node_name.clone(),
        ..Default::default()
    };
    let error = crate::pki::remembered::remembering(run(&command, settings, out, &mut report))
        .await
        .err();
    report.account_time(started);
    report.result = if error.is_some() {
        "failed".into()
    } else {
        "succeeded".into()
    };
    report.error = error.as_ref().map(|e| e.message().to_string());
    Outcome { report, error }
}

async fn run(
    command: &Command,
    settings: Settings,
    out: Output,
    report: &mut Report,
) -> Result<()> {
    let graph = PhaseGraph::shared(command.workflow())?;
    for s in &settings.skip_phases {
        if graph.get(s).is_none() {
            return Err(graph.unknown(s).context("--skip-phases"));
        }
    }
    if let Command::Phase { name: p, .. } = command
        && graph.get(p).is_none()
    {
        return Err(graph.unknown(p));
    }
    let mut settings = settings;
    super::recorded_layout::adopt(&mut settings)?;
    let layout = settings.file_layout()?;
    // Everything local is read and checked before anything is written: bad input leaves no
    // trace under the root (nor a dry-run directory behind). Confinement comes first, so that
    // nothing (not even the journal) is read through a planted link.
    let chained_dry_dir = settings.dry_run_dir.clone().filter(|d| d.is_dir());
    let fresh = || fresh_journal(&settings);
    let probe = World::new(layout.clone(), chained_dry_dir.clone(), fresh());
    probe.check_confined()?;
    let journal = read_journal(&probe, &mut settings)?;
    validate_node_name(&settings.node_name)?;
    // The report names the node and layout the journal says this root holds.
    report.node_name = settings.node_name.clone();
    report.layout = settings.layout.name().into();
    let probe = World::new(layout.clone(), chained_dry_dir, journal.clone());
    let mut cx = Ctx::new(settings, layout.clone(), probe, out, graph.clone());
    validate_inputs(&mut cx)?;
    crate::phases::cluster_identity::ensure_same_cluster(&mut cx)?;
    let dry_dir = if cx.settings.dry_run && !command.is_plan() {
        Some(prepare_dry_run_dir(&cx.settings)?)
    } else {
        None
    };
    if let Some(d) = &dry_dir {
        report.dry_run_dir = Some(d.display().to_string());
        cx.out.say(
            "dryrun",
            format!(
                "Writing would-be files under {} (the real root is not touched)",
                d.display()
            ),
        );
    }
    cx.world = World::new(layout.clone(), dry_dir.clone(), journal);
    let _lock = if command.is_plan() {
        None
    } else {
        let lock = super::lock::acquire(&cx.world, &format!("bootlet {}", command.label()))?;
        // Another run may have finished between our first read and the lock.
        cx.world.journal = read_journal(&cx.world, &mut cx.settings)?;
        Some(lock)
    };
    if dry_dir.is_none() && !command.is_plan() {
        cx.world.remove_stale_temps();
    }
    let skipped: BTreeSet<String> = cx.settings.skip_phases.iter().cloned().collect();
    let scope: Vec<String> = match command {
        Command::Phase { name: p, .. } => graph
            .order()
            .into_iter()
            .filter(|n| n == p || graph.ancestors(n).contains(p))
            .map(String::from)
            .collect(),
        _ => graph.order().into_iter().map(String::from).collect(),
    };
    let statuses = evaluate(&mut cx, &graph, &scope, &skipped).await?;
    let order: Vec<String> = match command {
        Command::Phase { name: p, .. } => vec![p.clone()],
        _ => scope.clone(),
    };
    if let Command::Phase { name: p, .. } = command {
        refuse_skip_when_asked_by_name(p, &statuses[p], &skipped)?;
    }
    if command.is_plan() {
        show_plan(&mut cx, &graph, &order, &statuses, report)?;
        return Ok(());
    }
    let mut failure = None;
    let mut ran: BTreeSet<String> = BTreeSet::new();
    for name in &order {
        let mut status = statuses[name].clone();
        // The world is the truth: a phase found done before an upstream phase changed the world
        // looks again (renew's write-files has nothing to install until a CSR phase staged one).
        if matches!(status, Status::Done(_))
            && failure.is_none()
            && ran.iter().any(|r| downstream_of(&graph, name, r))
            && let Check::NotDone(why) = recheck(&mut cx, &graph, name).await?
        {
            status = Status::WillRun(why);
        }
        if failure.is_some() {
            let r = report.phase_mut(name);
            r.status = "not-run".into();
            r.reason = "an earlier phase failed".into();
            continue;
        }
        match status {
            Status::Done(reason) => {
                cx.out.status(name, format!("already done: {reason}"));
                let r = report.phase_mut(name);
                r.status = "done".into();
                r.reason = reason;
            }
            Status::Skipped(reason) => {
                cx.out.status(name, format!("skipped: {reason}"));
                let r = report.phase_mut(name);
                r.status = "skipped".into();
                r.reason = reason;
            }
            Status::WillRun(reason) => {
                ran.insert(name.clone());
                if let Err(e) = run_phase(&mut cx, &graph, name, &reason, report).await {
                    failure = Some(e);
                }
            }
        }
    }
    // Whatever the outcome, what this run put in place is made durable before it reports.
    let settled = cx.world.finish();
    if let Some(e) = failure {
        return Err(e);
    }
    settled?;
    let installed = report
        .phases
        .iter()
        .any(|p| p.name == "write-files" && (p.status == "ran" || p.status == "done"));
    if *command == Command::Run("renew".into()) {
        let renewed: Vec<&str> = report
            .phases
            .iter()
            .filter(|p| p.status == "ran" && p.name.ends_with("-csr"))
            .map(|p| p.name.trim_end_matches("-csr"))
            .collect();
        let line = if renewed.is_empty() {
            "Nothing was due: no certificate was renewed".to_string()
        } else if cx.dry_run() {
            format!("Would renew: {}", renewed.join(", "))
        } else {
            format!(
                "Renewed the {} certificate{}; the old ones stayed valid and in place until the new ones were verified",
                renewed.join(" and "),
                if renewed.len() > 1 { "s" } else { "" }
            )
        };
        cx.out.say("renew", line);
    }
    if *command == Command::join() && !cx.dry_run() && installed {
        cx.out.say(
            "join",
            format!(
                "This node has joined the cluster as system:node:{}",
                cx.settings.node_name
            ),
        );
        if !skipped.contains("kubelet-config") {
            let inside = if cx.settings.root == std::path::Path::new("/") {
                String::new()
            } else {
                format!(" (paths inside --root {})", cx.settings.root.display())
            };
            cx.out.say(
                "join",
                format!(
                    "Start the node agent with: {}{inside}",
                    crate::phases::kubelet_config::start_command(&cx)
                ),
            );
        }
    }
    Ok(())
}

async fn run_phase(
    cx: &mut Ctx,
    graph: &PhaseGraph,
    name: &str,
    reason: &str,
    report: &mut Report,
) -> Result<()> {
    let manifest = graph.get(name).expect("known phase");
    let imp = phases::implementation(name)
        .ok_or_else(|| Error::internal(format!("phase {name} has no implementation")))?;
    cx.set_phase(name);
    let contract = format!("{}/{name}", graph.name());
    cx.world.enter_phase(
        &contract,
        manifest.write_patterns(&cx.layout)?,
        manifest.remove_patterns(&cx.layout),
    );
    cx.gate.enter(&contract, manifest.requests.clone(), false);
    // The journal is saved with the phase's outcome (and by facts that must be durable sooner),
    // and only once this join has changed something: a phase that only checks, or fails on bad
    // input, leaves no trace.
    cx.world.journal.start(name);
    let started = Instant::now();
    tracing::debug!("phase {name} runs: {reason}");
    let result = (imp.run)(cx).await;
    let files = cx.world.leave_phase();
    let requests = cx.gate.leave();
    let actions = cx.take_actions();
    let changed_world = !files.is_empty()
        || requests
            .iter()
            .any(|q| q.outcome == "sent" && !matches!(q.verb.as_str(), "get" | "list" | "watch"));
    let r = report.phase_mut(name);
    r.files = files;
    r.requests = requests;
    r.actions = actions;
    r.reason = reason.to_string();
    match &result {
        Ok(()) => {
            r.status = "ran".into();
            cx.world.journal.finish(name, None);
        }
        Err(e) => {
            r.status = "failed".into();
            cx.world.journal.finish(name, Some(e.message()));
        }
    }
    // The outcome goes into the journal, which is written with the phase's files at the next
    // flush: before anything must be durable (a key before its CSR is sent) and at the end of the
    // run, whatever its outcome. Until then this run reads its own writes from the world.
    let saved = if changed_world || cx.world.exists(cx.layout.path("journal")) {
        cx.world.save_journal(false)
    } else {
        Ok(())
    };
    report.phase_mut(name).duration_ms = started.elapsed().as_secs_f64() * 1e3;
    result?;
    saved
}

/// A phase asked for by name that would skip itself cannot do what was asked: inside a workflow
/// "skipped" is an answer, alone it would be a false success (`phase secret` without admin
/// credentials). `--skip-phases` naming it is the operator's own choice and stays a skip.
fn refuse_skip_when_asked_by_name(
    name: &str,
    status: &Status,
    skipped: &BTreeSet<String>,
) -> Result<()> {
    match status {
        Status::Skipped(why) if !skipped.contains(name) => Err(Error::new(
            crate::error::ErrorKind::MissingInput,
            format!("phase {name} cannot run: {why}"),
        )),
        _ => Ok(()),
    }
}

/// Reads the journal; a run that was not given a node name takes the journal's.
fn read_journal(world: &World, settings: &mut Settings) -> Result<Journal> {
    match world.read_journal_text()? {
        Some((text, shown)) => {
            let j = Journal::parse(&text, &shown)?;
            if !settings.node_name_given {
                settings.node_name = j.node_name.clone();
            }
            j.check_intent(&settings.node_name, settings.layout, &shown)?;
            Ok(j)
        }
        None => Ok(fresh_journal(settings)),
    }
}

/// The journal a first run starts, recording what later commands need to find the node's files.
fn fresh_journal(settings: &Settings) -> Journal {
    let mut j = Journal::new(&settings.node_name, settings.layout);
    if settings.layout == crate::files::LayoutKind::Krustlet {
        j.krustlet_data_dir = Some(settings.krustlet_data_dir.clone());
    }
    j
}

/// Parses every local input this run was given (token, kubeconfig files), so that bad input
/// fails before the first write.
fn validate_inputs(cx: &mut Ctx) -> Result<()> {
    cx.set_phase("preflight");
    cx.token()?;
    let files = [
        (
            cx.settings.bootstrap_kubeconfig.clone(),
            "the bootstrap kubeconfig",
        ),
        (cx.settings.discovery_file.clone(), "the discovery file"),
        (cx.settings.admin_kubeconfig.clone(), "the admin kubeconfig"),
    ];
    for (path, what) in files {
        if let Some(p) = path {
            cx.given_kubeconfig(&p, what)?;
        }
    }
    Ok(())
}

/// Node names must be DNS-1123 subdomains (they become `system:node:<name>` and a DNS SAN).
pub fn validate_node_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "node name {name:?} is not a valid DNS-1123 subdomain (lower-case letters, digits, '-' and '.', at most 253 characters, starting and ending with a letter or digit); pass --node-name"
        )))
    }
}

fn prepare_dry_run_dir(settings: &Settings) -> Result<std::path::PathBuf> {
    match &settings.dry_run_dir {
        Some(d) => {
            let d = if d.is_absolute() {
                d.clone()
            } else {
                std::env::current_dir()
                    .map_err(|e| Error::io("resolve", d, e))?
                    .join(d)
            };
            if d == settings.root || settings.root.starts_with(&d) {
                return Err(Error::usage(format!(
                    "--dry-run-dir {} must not be the root or contain it; choose an empty directory elsewhere",
                    d.display()
                )));
            }
            crate::files::ensure_private_dir(&d)?;
            Ok(d)
        }
        None => {
            let dir = tempfile::Builder::new()
                .prefix("bootlet-dry-run-")
                .tempdir()
                .map_err(|e| {
                    Error::io("create a dry-run directory in", &std::env::temp_dir(), e)
                })?;
            let dir = dir.keep();
            std::fs::set_permissions(
                &dir,
                std::os::unix::fs::PermissionsExt::from_mode(crate::files::PRIVATE_DIR_MODE),
            )
            .map_err(|e| Error::io("set mode of", &dir, e))?;
            Ok(dir)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names() {
        for ok in ["n1", "edge-17.example.com", "a"] {
            validate_node_name(ok).unwrap();
        }
        for bad in ["", "N1", "-a", "a-", "a..b", "a_b", &"x".repeat(254)] {
            assert!(validate_node_name(bad).is_err(), "{bad}");
        }
    }
}
