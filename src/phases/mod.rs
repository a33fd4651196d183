//! One module per phase, named as in `phases/*.toml`. Each has a `check` (is my job already done
//! in the world?) and a `run`. The registry below is matched against the manifests by a test.

pub mod client_csr;
pub mod cluster_identity;
pub mod common;
pub mod discovery;
pub mod kubeconfig;
pub mod preflight;
pub mod secret;
pub mod serving_csr;
pub mod token;
pub mod write_files;

use futures::future::BoxFuture;

use crate::engine::Ctx;
use crate::error::Result;

/// A phase's answer to "is my job already done?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// Done, and why we know.
    Done(String),
    /// Not done, and what is missing.
    NotDone(String),
    /// Not applicable this run, and why.
    Skip(String),
}

/// The done-check of a phase.
pub type CheckFn = for<'a> fn(&'a mut Ctx) -> BoxFuture<'a, Result<Check>>;
/// The action of a phase.
pub type RunFn = for<'a> fn(&'a mut Ctx) -> BoxFuture<'a, Result<()>>;

/// A phase implementation.
pub struct PhaseImpl {
    /// Name, as in the manifest.
    pub name: &'static str,
    /// Done-check.
    pub check: CheckFn,
    /// Action.
    pub run: RunFn,
}

macro_rules! phase {
    ($name:literal, $module:ident) => {
        PhaseImpl {
            name: $name,
            check: |cx| Box::pin($module::check(cx)),
            run: |cx| Box::pin($module::run(cx)),
        }
    };
}

/// Every implemented phase.
pub static IMPLEMENTATIONS: &[PhaseImpl] = &[
    phase!("preflight", preflight),
    phase!("token", token),
    phase!("secret", secret),
    phase!("discovery", discovery),
    phase!("kubeconfig", kubeconfig),
    phase!("client-csr", client_csr),
    phase!("serving-csr", serving_csr),
    phase!("write-files", write_files),
];

/// The implementation of `name`.
pub fn implementation(name: &str) -> Option<&'static PhaseImpl> {
    IMPLEMENTATIONS.iter().find(|p| p.name == name)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use crate::engine::graph::PhaseGraph;
    use crate::files::{Layout, LayoutKind};

    #[test]
    fn every_manifest_has_an_implementation_and_the_reverse() {
        let g = PhaseGraph::embedded().unwrap();
        let manifests: BTreeSet<&str> = g.order().into_iter().collect();
        let impls: BTreeSet<&str> = super::IMPLEMENTATIONS.iter().map(|p| p.name).collect();
        assert_eq!(
            manifests, impls,
            "phases/*.toml and src/phases/ must list the same phases"
        );
        for name in &manifests {
            let file = format!(
                "{}/src/phases/{}.rs",
                env!("CARGO_MANIFEST_DIR"),
                name.replace('-', "_")
            );
            assert!(
                std::path::Path::new(&file).exists(),
                "phase {name} lives in {file}"
            );
        }
    }

    #[test]
    fn manifests_expand_in_both_layouts_and_inputs_name_real_producers() {
        let g = PhaseGraph::embedded().unwrap();
        for kind in [LayoutKind::Kubelet, LayoutKind::Krustlet] {
            let l = Layout::new(kind, "/".into(), "/root/.krustlet", None).unwrap();
            for m in g.manifests() {
                m.write_patterns(&l).unwrap_or_else(|e| panic!("{e}"));
            }
        }
        for m in g.manifests() {
            let upstream = g.ancestors(&m.name);
            for i in &m.inputs {
                assert!(
                    i.from.starts_with("--") || upstream.contains(&i.from),
                    "phases/{}.toml: input {:?} comes from {:?}, which is not upstream",
                    m.name,
                    i.name,
                    i.from
                );
            }
        }
    }
}
