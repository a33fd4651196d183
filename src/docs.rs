//! Generated documentation: `docs/phases.md` from every workflow's manifests (a test fails when
//! it is stale).

use crate::engine::graph::PhaseGraph;

/// The text of `docs/phases.md`.
pub fn phases_md(workflows: &[PhaseGraph]) -> String {
    let mut out = String::from(
        "# Workflows and phases\n\n<!-- Generated from phases/<workflow>/*.toml by `bootlet gen-docs`; do not edit. A test fails when this file is stale. -->\n\n",
    );
    out.push_str("Paths use the layout's variables: `{bootstrap_kubeconfig}` is `/etc/kubernetes/bootstrap-kubelet.conf` in the kubelet layout and `$KRUSTLET_DATA_DIR/config/bootstrap.conf` in the krustlet layout; `{state}` is `/var/lib/bootlet` (kubelet) or `$KRUSTLET_DATA_DIR/bootlet` (krustlet); `{staging}` is `{state}/staging`.\n\n");
    for g in workflows {
        out.push_str(&format!(
            "- [`bootlet {}`](#workflow-{}): {}\n",
            g.name(),
            g.name(),
            g.description().summary
        ));
    }
    out.push('\n');
    for g in workflows {
        workflow_md(&mut out, g);
    }
    out
}

fn workflow_md(out: &mut String, graph: &PhaseGraph) {
    out.push_str(&format!(
        "## Workflow {}\n\n{}\n\nRun order of `bootlet {}`:\n\n```mermaid\n",
        graph.name(),
        graph.description().summary,
        graph.name()
    ));
    out.push_str(&graph.render_mermaid());
    out.push_str("```\n\n");
    if graph.description().done_when_downstream_done {
        out.push_str("A phase counts as done when its own check passes or when every phase after it is done (its output has been used).\n\n");
    } else {
        out.push_str("Each phase's own check decides whether it runs.\n\n");
    }
    for (i, m) in graph.manifests().enumerate() {
        out.push_str(&format!(
            "### {}.{}. {}\n\n{}\n\n",
            graph.description().order,
            i + 1,
            m.name,
            m.summary
        ));
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.iter()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        out.push_str(&format!("- **needs:** {}\n", list(&m.needs)));
        if !m.after.is_empty() {
            out.push_str(&format!(
                "- **runs after, when both run:** {}\n",
                list(&m.after)
            ));
        }
        out.push_str(&format!("- **done when:** {}\n", m.done_check));
        if m.final_output {
            out.push_str("- **final output:** its output is the workflow's result, so it is done on its own check only, never on account of the phases after it\n");
        }
        if !m.inputs.is_empty() {
            out.push_str("- **inputs:** ");
            out.push_str(
                &m.inputs
                    .iter()
                    .map(|i| format!("{} (from `{}`)", i.name, i.from))
                    .collect::<Vec<_>>()
                    .join("; "),
            );
            out.push('\n');
        }
        if m.writes.is_empty() && m.removes.is_empty() {
            out.push_str("- **files:** none\n");
        } else {
            out.push_str("\n| file | mode | layouts | why |\n| --- | --- | --- | --- |\n");
            for w in &m.writes {
                let layouts = if w.layouts.is_empty() {
                    "all".to_string()
                } else {
                    w.layouts
                        .iter()
                        .map(|l| l.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                out.push_str(&format!(
                    "| `{}` | {} | {layouts} | {} |\n",
                    w.path, w.mode, w.what
                ));
            }
            for r in &m.removes {
                out.push_str(&format!("| `{}` | removed | all | {} |\n", r.path, r.what));
            }
            out.push('\n');
        }
        if m.requests.is_empty() {
            out.push_str("- **API requests:** none\n");
        } else {
            out.push_str("\n| verb | resource | as | why |\n| --- | --- | --- | --- |\n");
            for r in &m.requests {
                out.push_str(&format!(
                    "| {} | {} | {} | {} |\n",
                    r.verb, r.resource, r.identity, r.what
                ));
            }
        }
        out.push('\n');
    }
}

/// `bootlet help phase <name>`: the phase's contract as plain text, for every workflow that has
/// a phase of that name; `None` when none has.
pub fn phase_help(workflows: &[PhaseGraph], name: &str) -> Option<String> {
    let mut out = String::new();
    for g in workflows {
        let Some(m) = g.get(name) else { continue };
        let run = if g.name() == "join" {
            format!("bootlet phase {name}")
        } else {
            format!("bootlet phase {name} --workflow {}", g.name())
        };
        out.push_str(&format!("{run}\n    {}\n\n", m.summary));
        let names = |v: &[String]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        out.push_str(&format!("  needs:      {}\n", names(&m.needs)));
        if !m.after.is_empty() {
            out.push_str(&format!("  after:      {}\n", names(&m.after)));
        }
        out.push_str(&format!("  done when:  {}\n", m.done_check));
        for i in &m.inputs {
            out.push_str(&format!("  input:      {} (from {})\n", i.name, i.from));
        }
        for w in &m.writes {
            out.push_str(&format!(
                "  writes:     {} ({}): {}\n",
                w.path, w.mode, w.what
            ));
        }
        for r in &m.removes {
            out.push_str(&format!("  removes:    {}: {}\n", r.path, r.what));
        }
        for r in &m.requests {
            out.push_str(&format!(
                "  requests:   {} {} as {}: {}\n",
                r.verb, r.resource, r.identity, r.what
            ));
        }
        if m.writes.is_empty() && m.removes.is_empty() {
            out.push_str("  files:      none\n");
        }
        if m.requests.is_empty() {
            out.push_str("  requests:   none\n");
        }
        out.push('\n');
    }
    (!out.is_empty()).then(|| {
        out.push_str("The contract is enforced: a write or request outside it is refused as a bug. Options: `bootlet phase --help`.\n");
        out
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn docs_phases_md_is_up_to_date() {
        let workflows = crate::engine::graph::workflows().unwrap();
        let want = super::phases_md(&workflows);
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/phases.md");
        if std::env::var_os("BOOTLET_UPDATE_DOCS").is_some() {
            std::fs::write(path, &want).unwrap();
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            have == want,
            "docs/phases.md is stale: run `cargo run -- gen-docs` (or BOOTLET_UPDATE_DOCS=1 cargo test)"
        );
    }
}
