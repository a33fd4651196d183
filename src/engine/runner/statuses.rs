//! Deciding each phase's status before a run: its own done-check (held to the read-only requests
//! of its manifest), or "done" because everything after it is done and its output was used up, and
//! the same statuses shown by `plan` together with what preflight would refuse.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::super::context::Ctx;
use super::super::graph::PhaseGraph;
use super::super::report::Report;
use crate::error::{Error, Result};
use crate::phases::{self, Check};

/// A phase's status before the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "reason", rename_all = "kebab-case")]
pub enum Status {
    /// Nothing to do.
    Done(String),
    /// Will run.
    WillRun(String),
    /// Not run.
    Skipped(String),
}

impl Status {
    pub(super) fn label(&self) -> &'static str {
        match self {
            Status::Done(_) => "done",
            Status::WillRun(_) => "will run",
            Status::Skipped(_) => "skipped",
        }
    }
    pub(super) fn reason(&self) -> &str {
        match self {
            Status::Done(r) | Status::WillRun(r) | Status::Skipped(r) => r,
        }
    }
}

/// The first phase upstream of `name` that will run, if any.
pub(super) fn runs_upstream_of(
    graph: &PhaseGraph,
    name: &str,
    statuses: &BTreeMap<String, Status>,
) -> Option<String> {
    graph
        .order()
        .into_iter()
        .find(|up| {
            matches!(statuses.get(*up), Some(Status::WillRun(_))) && downstream_of(graph, name, up)
        })
        .map(String::from)
}

/// Runs the done-check of `name`, held to read-only requests of its manifest.
pub(super) async fn recheck(cx: &mut Ctx, graph: &PhaseGraph, name: &str) -> Result<Check> {
    let manifest = graph.get(name).expect("known");
    let imp = phases::implementation(name)
        .ok_or_else(|| Error::internal(format!("phase {name} has no implementation")))?;
    cx.set_phase(name);
    cx.gate.enter(
        &format!("{}/{name}", graph.name()),
        manifest.requests.clone(),
        true,
    );
    let checked = (imp.check)(cx).await;
    cx.gate.leave();
    cx.take_actions();
    checked
}

/// Statuses of `scope`, sinks first, so "everything after me is done" can be answered.
pub(super) async fn evaluate(
    cx: &mut Ctx,
    graph: &PhaseGraph,
    scope: &[String],
    skipped: &BTreeSet<String>,
) -> Result<BTreeMap<String, Status>> {
    let mut statuses: BTreeMap<String, Status> = BTreeMap::new();
    for name in scope.iter().rev() {
        let status = if skipped.contains(name) {
            Status::Skipped("in --skip-phases".into())
        } else {
            match recheck(cx, graph, name).await? {
                Check::Done(r) => Status::Done(r),
                Check::Skip(r) => Status::Skipped(r),
                Check::NotDone(r)
                    if !graph.description().done_when_downstream_done
                        || graph.get(name).is_some_and(|m| m.final_output) =>
                {
                    Status::WillRun(r)
                }
                Check::NotDone(r) => match used_up_by(graph, name, scope, &statuses) {
                    Some(by) => Status::Done(format!(
                        "everything after it is done ({by}); its output has been used"
                    )),
                    None => Status::WillRun(r),
                },
            }
        };
        statuses.insert(name.clone(), status);
    }
    Ok(statuses)
}

/// If every phase downstream of `name` in scope is done or skipped (and one is done), the name of
/// the nearest done one.
pub(super) fn used_up_by(
    graph: &PhaseGraph,
    name: &str,
    scope: &[String],
    statuses: &BTreeMap<String, Status>,
) -> Option<String> {
    let downstream: Vec<&String> = scope
        .iter()
        .filter(|n| *n != name && downstream_of(graph, n, name))
        .collect();
    let mut first_done = None;
    for d in &downstream {
        match statuses.get(*d) {
            Some(Status::Done(_)) => {
                if first_done.is_none() {
                    first_done = Some((*d).clone());
                }
            }
            Some(Status::Skipped(_)) => {}
            _ => return None,
        }
    }
    first_done
}

/// Whether `later` comes after `earlier` through `needs` or `after` edges.
pub(super) fn downstream_of(graph: &PhaseGraph, later: &str, earlier: &str) -> bool {
    // Asked for every pair of phases in a run's loop: walked over borrowed names.
    let mut stack = vec![later];
    let mut seen = BTreeSet::new();
    while let Some(n) = stack.pop() {
        if !seen.insert(n) {
            continue;
        }
        if let Some(m) = graph.get(n) {
            for dep in m.needs.iter().chain(&m.after) {
                if dep == earlier {
                    return true;
                }
                stack.push(dep);
            }
        }
    }
    false
}

/// `plan`: each phase's status and why, with what preflight would refuse (its checks have no side
/// effects), into the text lines and the report (`plan -o json` has the run report's shape).
pub(super) fn show_plan(
    cx: &mut Ctx,
    graph: &PhaseGraph,
    order: &[String],
    statuses: &BTreeMap<String, Status>,
    report: &mut Report,
) -> Result<()> {
    let mut blocked_by = None;
    for name in order {
        let s = &statuses[name];
        let (mut status, mut reason) = (s.label().replace(' ', "-"), s.reason().to_string());
        let mut actions = Vec::new();
        if let Status::Done(_) = s
            && let Some(up) = runs_upstream_of(graph, name, statuses)
        {
            reason.push_str(&format!("; checked again after {up} runs"));
        }
        if name == "preflight" && matches!(s, Status::WillRun(_)) {
            cx.set_phase(name);
            let fatal: Vec<String> = crate::phases::preflight::findings(cx)?
                .into_iter()
                .filter(|f| !f.ignored)
                .map(|f| format!("[ERROR {}]: {}", f.name, f.problem))
                .collect();
            if !fatal.is_empty() {
                status = "will-fail".into();
                reason = format!("{} check(s) will stop the run", fatal.len());
                actions = fatal;
                blocked_by = Some(name.clone());
            }
        } else if let (Some(by), Status::WillRun(why)) = (&blocked_by, s) {
            status = "not-reached".into();
            reason = format!("{by} will stop the run first (else: {why})");
        }
        cx.out
            .say(name, format!("{}: {reason}", status.replace('-', " ")));
        for a in &actions {
            cx.out.say(name, format!("\t{a}"));
        }
        let r = report.phase_mut(name);
        r.status = status;
        r.reason = reason;
        r.actions = actions;
    }
    Ok(())
}
