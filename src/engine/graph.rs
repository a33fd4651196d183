//! Workflow graphs: for each workflow (`phases/<workflow>/`), a petgraph DAG built from its phase
//! manifests, its run order and its renderings.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, LazyLock, Mutex};

use petgraph::Direction;
use petgraph::algo::is_cyclic_directed;
use petgraph::graph::{DiGraph, NodeIndex};

use super::manifest::{MANIFEST_SOURCES, Manifest, WorkflowManifest};
use crate::error::{Error, Result};

/// Why one phase comes before another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    /// `needs`: the later phase uses the earlier one's output.
    Needs,
    /// `after`: ordering only, when both run.
    After,
}

/// The validated graph of one workflow.
#[derive(Debug, Clone)]
pub struct PhaseGraph {
    workflow: WorkflowManifest,
    graph: DiGraph<Manifest, Edge>,
    index: BTreeMap<String, NodeIndex>,
    order: Vec<NodeIndex>,
}

/// The workflows embedded in this binary, in their declared order.
pub fn workflows() -> Result<Vec<PhaseGraph>> {
    let mut names: Vec<&str> = MANIFEST_SOURCES.iter().map(|(w, _, _)| *w).collect();
    names.dedup();
    let mut graphs = names
        .into_iter()
        .map(PhaseGraph::workflow)
        .collect::<Result<Vec<_>>>()?;
    graphs.sort_by_key(|g| g.workflow.order);
    Ok(graphs)
}

/// The names of the embedded workflows, in order.
pub fn workflow_names() -> Vec<String> {
    workflows()
        .map(|ws| ws.iter().map(|g| g.name().to_string()).collect())
        .unwrap_or_default()
}

impl PhaseGraph {
    /// The join workflow's graph.
    pub fn embedded() -> Result<PhaseGraph> {
        Self::workflow("join")
    }

    /// The graph of the workflow `name`, built once per process and shared: the manifests are
    /// part of the binary, so every run of a workflow has the same graph (a process running many
    /// joins, like the storm benchmark or a library user, builds it once, not per join).
    pub fn shared(name: &str) -> Result<Arc<PhaseGraph>> {
        static BUILT: LazyLock<Mutex<BTreeMap<String, Arc<PhaseGraph>>>> =
            LazyLock::new(Default::default);
        let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(g) = built.get(name) {
            return Ok(g.clone());
        }
        let g = Arc::new(Self::workflow(name)?);
        built.insert(name.to_string(), g.clone());
        Ok(g)
    }

    /// The graph of the workflow `name` embedded in this binary.
    pub fn workflow(name: &str) -> Result<PhaseGraph> {
        let sources: Vec<(&str, &str)> = MANIFEST_SOURCES
            .iter()
            .filter(|(w, _, _)| *w == name)
            .map(|(_, stem, text)| (*stem, *text))
            .collect();
        if sources.is_empty() {
            return Err(Error::usage(format!(
                "unknown workflow {name:?}; workflows are: {}",
                workflow_names().join(", ")
            )));
        }
        Self::from_sources(name, &sources)
    }

    /// Builds and validates the graph of `workflow` from `(stem, json)` pairs, the manifests as
    /// build.rs embeds them (one of them the stem `workflow`): unknown names and cycles are errors.
    pub fn from_sources(workflow: &str, sources: &[(&str, &str)]) -> Result<PhaseGraph> {
        let mut graph = DiGraph::new();
        let mut index = BTreeMap::new();
        let mut described = None;
        for (stem, text) in sources {
            if *stem == "workflow" {
                described = Some(WorkflowManifest::parse(workflow, text)?);
                continue;
            }
            let m = Manifest::parse(&format!("{workflow}/{stem}"), text)?;
            let name = m.name.clone();
            let ix = graph.add_node(m);
            if index.insert(name.clone(), ix).is_some() {
                return Err(Error::internal(format!(
                    "two manifests declare phase {name:?}"
                )));
            }
        }
        let nodes: Vec<NodeIndex> = graph.node_indices().collect();
        for ix in nodes {
            let m = graph[ix].clone();
            for (deps, kind) in [(&m.needs, Edge::Needs), (&m.after, Edge::After)] {
                for dep in deps {
                    let from = index.get(dep).ok_or_else(|| {
                        Error::internal(format!(
                            "phases/{workflow}/{}.toml refers to unknown phase {dep:?} (known: {})",
                            m.name,
                            index.keys().cloned().collect::<Vec<_>>().join(", ")
                        ))
                    })?;
                    graph.add_edge(*from, ix, kind);
                }
            }
        }
        if is_cyclic_directed(&graph) {
            let cycle = find_cycle(&graph).join(" -> ");
            return Err(Error::internal(format!(
                "the phase manifests form a cycle: {cycle}"
            )));
        }
        let order = stable_topological_order(&graph);
        let workflow = described.ok_or_else(|| {
            Error::internal(format!("phases/{workflow}/workflow.toml is missing"))
        })?;
        Ok(PhaseGraph {
            workflow,
            graph,
            index,
            order,
        })
    }

    /// The workflow's name.
    pub fn name(&self) -> &str {
        &self.workflow.name
    }

    /// The workflow's own manifest.
    pub fn description(&self) -> &WorkflowManifest {
        &self.workflow
    }

    /// Phase names in run order.
    pub fn order(&self) -> Vec<&str> {
        self.order
            .iter()
            .map(|ix| self.graph[*ix].name.as_str())
            .collect()
    }

    /// Manifests in run order.
    pub fn manifests(&self) -> impl Iterator<Item = &Manifest> {
        self.order.iter().map(|ix| &self.graph[*ix])
    }

    /// The manifest of `name`.
    pub fn get(&self, name: &str) -> Option<&Manifest> {
        self.index.get(name).map(|ix| &self.graph[*ix])
    }

    /// A usage error for an unknown phase name, listing the known ones.
    pub fn unknown(&self, name: &str) -> Error {
        Error::usage(format!(
            "unknown phase {name:?}; the phases of {} are: {}",
            self.workflow.name,
            self.order().join(", ")
        ))
    }

    /// Phases that directly `need` `name`.
    pub fn dependants(&self, name: &str) -> Vec<&str> {
        let Some(ix) = self.index.get(name) else {
            return vec![];
        };
        self.graph
            .edges_directed(*ix, Direction::Outgoing)
            .filter(|e| *e.weight() == Edge::Needs)
            .map(|e| {
                self.graph[petgraph::visit::EdgeRef::target(&e)]
                    .name
                    .as_str()
            })
            .collect()
    }

    /// All phases `name` needs, directly or not.
    pub fn ancestors(&self, name: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut stack: Vec<&str> = self
            .get(name)
            .map(|m| m.needs.iter().map(String::as_str).collect())
            .unwrap_or_default();
        while let Some(n) = stack.pop() {
            if out.insert(n.to_string())
                && let Some(m) = self.get(n)
            {
                stack.extend(m.needs.iter().map(String::as_str));
            }
        }
        out
    }

    /// Plain-text rendering: one line per phase in run order with its needs.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for (i, m) in self.manifests().enumerate() {
            let needs = if m.needs.is_empty() {
                "-".to_string()
            } else {
                m.needs.join(", ")
            };
            let after = if m.after.is_empty() {
                String::new()
            } else {
                format!("; after {}", m.after.join(", "))
            };
            out.push_str(&format!(
                "{:>2}. {:<12} needs {needs}{after}\n    {}\n",
                i + 1,
                m.name,
                m.summary
            ));
        }
        out
    }

    /// Graphviz DOT; `after` edges dashed.
    pub fn render_dot(&self) -> String {
        let mut out = format!(
            "digraph {} {{\n  rankdir=LR;\n  node [shape=box];\n",
            self.workflow.name
        );
        for m in self.manifests() {
            out.push_str(&format!(
                "  \"{}\" [tooltip=\"{}\"];\n",
                m.name,
                m.summary.replace('"', "'")
            ));
        }
        for m in self.manifests() {
            for n in &m.needs {
                out.push_str(&format!("  \"{n}\" -> \"{}\";\n", m.name));
            }
            for a in &m.after {
                out.push_str(&format!(
                    "  \"{a}\" -> \"{}\" [style=dashed, label=\"after\"];\n",
                    m.name
                ));
            }
        }
        out.push_str("}\n");
        out
    }

    /// Mermaid flowchart; `after` edges dotted.
    pub fn render_mermaid(&self) -> String {
        let id = |s: &str| s.replace('-', "_");
        let mut out = String::from("flowchart LR\n");
        for m in self.manifests() {
            out.push_str(&format!("  {}[\"{}\"]\n", id(&m.name), m.name));
        }
        for m in self.manifests() {
            for n in &m.needs {
                out.push_str(&format!("  {} --> {}\n", id(n), id(&m.name)));
            }
            for a in &m.after {
                out.push_str(&format!("  {} -.->|after| {}\n", id(a), id(&m.name)));
            }
        }
        out
    }
}

/// Kahn's algorithm, taking ready phases in name order so the order is stable.
fn stable_topological_order(graph: &DiGraph<Manifest, Edge>) -> Vec<NodeIndex> {
    let mut indegree: BTreeMap<NodeIndex, usize> = graph
        .node_indices()
        .map(|ix| (ix, graph.edges_directed(ix, Direction::Incoming).count()))
        .collect();
    let mut ready: BTreeSet<(String, NodeIndex)> = indegree
        .iter()
        .filter(|(_, d)| **d == 0)
        .map(|(ix, _)| (graph[*ix].name.clone(), *ix))
        .collect();
    let mut order = Vec::new();
    while let Some(first) = ready.pop_first() {
        let ix = first.1;
        order.push(ix);
        for next in graph.neighbors_directed(ix, Direction::Outgoing) {
            let d = indegree.get_mut(&next).expect("node");
            *d -= 1;
            if *d == 0 {
                ready.insert((graph[next].name.clone(), next));
            }
        }
    }
    order
}

/// Names along one cycle, for the error message.
fn find_cycle(graph: &DiGraph<Manifest, Edge>) -> Vec<String> {
    for scc in petgraph::algo::tarjan_scc(graph) {
        let self_loop = scc.len() == 1 && graph.contains_edge(scc[0], scc[0]);
        if scc.len() > 1 || self_loop {
            let mut names: Vec<String> = scc.iter().map(|ix| graph[*ix].name.clone()).collect();
            names.sort();
            let first = names[0].clone();
            names.push(first);
            return names;
        }
    }
    vec![]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, needs: &[&str]) -> String {
        format!(r#"{{"name": "{name}", "summary": "s", "needs": {needs:?}, "done_check": "d"}}"#)
    }

    const W: &str =
        r#"{"name": "t", "order": 9, "summary": "s", "done_when_downstream_done": true}"#;

    #[test]
    fn every_workflow_builds_and_renew_and_reset_exist() {
        let names = workflow_names();
        assert_eq!(names, ["join", "renew", "reset"]);
        let renew = PhaseGraph::workflow("renew").unwrap();
        assert_eq!(renew.order(), ["client-csr", "serving-csr", "write-files"]);
        assert!(!renew.description().done_when_downstream_done);
        assert!(
            PhaseGraph::workflow("nope")
                .unwrap_err()
                .message()
                .contains("join, renew, reset")
        );
    }

    #[test]
    fn embedded_graph_orders_the_join() {
        let g = PhaseGraph::embedded().unwrap();
        assert_eq!(
            g.order(),
            [
                "preflight",
                "token",
                "secret",
                "discovery",
                "kubeconfig",
                "client-csr",
                "serving-csr",
                "write-files",
                "kubelet-config"
            ]
        );
        assert_eq!(g.dependants("kubeconfig"), ["client-csr"]);
        assert!(g.ancestors("write-files").contains("token"));
    }

    #[test]
    fn cycles_and_unknown_names_are_errors() {
        let a = m("a", &["b"]);
        let b = m("b", &["a"]);
        let e =
            PhaseGraph::from_sources("t", &[("workflow", W), ("a", &a), ("b", &b)]).unwrap_err();
        assert!(e.message().contains("cycle: a -> b -> a"), "{e}");
        let c = m("c", &["nope"]);
        let e = PhaseGraph::from_sources("t", &[("workflow", W), ("c", &c)]).unwrap_err();
        assert!(e.message().contains("unknown phase \"nope\""), "{e}");
        let d = m("d", &[]);
        let e = PhaseGraph::from_sources("t", &[("workflow", W), ("x", &d)]).unwrap_err();
        assert!(e.message().contains("must equal the file name"), "{e}");
        let e = PhaseGraph::from_sources("t", &[("d", &d)]).unwrap_err();
        assert!(e.message().contains("workflow.toml is missing"), "{e}");
    }
}
