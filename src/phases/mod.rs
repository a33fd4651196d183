//! One module per phase, named as in `phases/<workflow>/*.toml`; a phase several workflows share
//! (client-csr, serving-csr, write-files in join and renew) is one implementation. Each has a
//! `check` (is my job already done in the world?) and a `run`. The registry below is matched
//! against every workflow's manifests by a test. What several phases share lives in modules named for it:
//! `cluster_record`, `node_identity`, `credentials`, `certificate_request`, `cluster_identity`, `renewal`.

pub mod certificate_request;
pub mod cleanup_node;
pub mod client_csr;
pub mod cluster_identity;
pub mod cluster_record;
pub mod credentials;
pub mod discovery;
pub mod kubeconfig;
pub mod kubelet_config;
pub mod machine_checks;
pub mod node_identity;
pub mod node_registration;
pub mod preflight;
pub mod renewal;
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
    phase!("kubelet-config", kubelet_config),
    phase!("cleanup-node", cleanup_node),
];

/// The implementation of `name`.
pub fn implementation(name: &str) -> Option<&'static PhaseImpl> {
    IMPLEMENTATIONS.iter().find(|p| p.name == name)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use crate::files::{Layout, LayoutKind};

    #[test]
    fn every_manifest_has_an_implementation_and_the_reverse() {
        let workflows = crate::engine::graph::workflows().unwrap();
        let mut manifests: BTreeSet<String> = BTreeSet::new();
        for g in &workflows {
            manifests.extend(g.order().into_iter().map(String::from));
        }
        let impls: BTreeSet<String> = super::IMPLEMENTATIONS
            .iter()
            .map(|p| p.name.to_string())
            .collect();
        assert_eq!(
            manifests, impls,
            "phases/<workflow>/*.toml together and src/phases/ must list the same phases"
        );
        let renew = workflows.iter().find(|g| g.name() == "renew").unwrap();
        let join = workflows.iter().find(|g| g.name() == "join").unwrap();
        for shared in ["client-csr", "serving-csr", "write-files"] {
            assert!(
                renew.get(shared).is_some() && join.get(shared).is_some(),
                "{shared}"
            );
        }
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
        let names = crate::engine::graph::workflow_names();
        for g in crate::engine::graph::workflows().unwrap() {
            for kind in [LayoutKind::Kubelet, LayoutKind::Krustlet] {
                let l = Layout::new(kind, "/".into(), "/root/.krustlet", None).unwrap();
                for m in g.manifests() {
                    m.write_patterns(&l).unwrap_or_else(|e| panic!("{e}"));
                }
            }
            for m in g.manifests() {
                let upstream = g.ancestors(&m.name);
                for i in &m.inputs {
                    let other_workflow = i
                        .from
                        .strip_prefix("workflow:")
                        .is_some_and(|w| names.iter().any(|n| n == w));
                    assert!(
                        i.from.starts_with("--") || other_workflow || upstream.contains(&i.from),
                        "phases/{}/{}.toml: input {:?} comes from {:?}, which is not upstream",
                        g.name(),
                        m.name,
                        i.name,
                        i.from
                    );
                }
            }
        }
    }
}
