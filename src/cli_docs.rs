//! What the command line says about itself: shell completions and man pages generated from the
//! clap definitions (so they cannot drift from the flags), `bootlet version`, and
//! `bootlet help phase <name>`, the one help page clap cannot reach (phases are data, not
//! subcommands).

use std::path::Path;

use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::{Error, Result};

/// The clap command with the texts `main` adds at run time (long help, phase list).
pub fn command() -> clap::Command {
    let mut command = Cli::command().after_long_help(format!(
        "{}\n\n{}",
        crate::cli::TOP_EXAMPLES,
        crate::cli::EXIT_CODES
    ));
    if let Ok(g) = crate::engine::graph::PhaseGraph::embedded() {
        let phases = format!(
            "Phases, in run order (`bootlet help phase <name>` shows one's contract):\n{}",
            g.render_text()
        );
        command = command.mut_subcommand("phase", |c| c.before_long_help(phases));
    }
    command
}

/// `bootlet completions SHELL` (`phase <TAB>` offers the phase names: [`PhaseName`]).
pub fn completions(shell: clap_complete::Shell) -> Result<i32> {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut command(), "bootlet", &mut buf);
    crate::out!("{}", String::from_utf8_lossy(&buf));
    Ok(0)
}

/// `bootlet man [--out-dir DIR]`.
pub fn man(out_dir: Option<&Path>) -> Result<i32> {
    let cmd = command();
    match out_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
            clap_mangen::generate_to(cmd, dir)
                .map_err(|e| Error::io("write man pages in", dir, e))?;
            Ok(0)
        }
        None => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut buf)
                .map_err(|e| Error::internal(format!("cannot render the man page: {e}")))?;
            crate::out!("{}", String::from_utf8_lossy(&buf));
            Ok(0)
        }
    }
}

/// `bootlet version [-o json]`. The JSON carries kubeadm's `clientVersion` shape for scripts
/// used to `kubeadm version -o json`, and the versions of the formats this build reads and writes.
pub fn version(json: bool) -> Result<i32> {
    let v = env!("CARGO_PKG_VERSION");
    let platform = format!("{}/{}", std::env::consts::OS, go_arch());
    if json {
        let mut parts = v.split('.');
        let doc = serde_json::json!({
            "clientVersion": {
                "major": parts.next().unwrap_or("0"),
                "minor": parts.next().unwrap_or("0"),
                "gitVersion": format!("v{v}"),
                "platform": platform,
            },
            "bootlet": {
                "version": v,
                "reportVersion": crate::engine::report::REPORT_VERSION,
                "journalVersion": crate::engine::journal::VERSION,
                "workflows": crate::engine::graph::workflow_names(),
                "layouts": ["kubelet", "krustlet"],
                "kubernetesApi": "v1.33",
            },
        });
        crate::outln!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        crate::outln!("bootlet version v{v} ({platform})");
    }
    Ok(0)
}

/// The architecture as Kubernetes names it (`amd64`, `arm64`), not as Rust does.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        other => other,
    }
}

/// `bootlet help phase NAME`: `Some(exit code)` when `args` asked for it.
pub fn help_phase(args: &[String]) -> Option<i32> {
    // Global flags (`-v`) may come anywhere; the words are what count.
    let words: Vec<&String> = args
        .iter()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let [help, phase, name] = words.as_slice() else {
        return None;
    };
    if *help != "help" || *phase != "phase" {
        return None;
    }
    let workflows = crate::engine::graph::workflows().ok()?;
    match crate::docs::phase_help(&workflows, name) {
        Some(text) => {
            crate::out!("{text}");
            Some(0)
        }
        None => {
            let known: Vec<String> = workflows
                .iter()
                .flat_map(|g| g.manifests().map(|m| m.name.clone()).collect::<Vec<_>>())
                .collect();
            let mut known = known;
            known.sort();
            known.dedup();
            crate::errln!(
                "error: unknown phase {name:?}; phases are: {}",
                known.join(", ")
            );
            Some(2)
        }
    }
}

/// The value parser of `phase NAME`: any name parses (an unknown one gets the runner's message
/// naming its workflow's phases), and every phase of every workflow is offered to shell completion.
#[derive(Clone, Debug)]
pub struct PhaseName;

impl clap::builder::TypedValueParser for PhaseName {
    type Value = String;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> std::result::Result<String, clap::Error> {
        Ok(value.to_string_lossy().into_owned())
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        let mut names: Vec<String> = crate::engine::graph::workflows()
            .unwrap_or_default()
            .iter()
            .flat_map(|g| g.order().into_iter().map(String::from).collect::<Vec<_>>())
            .collect();
        names.sort();
        names.dedup();
        // clap keeps `&'static str` names; this runs once, for a completion script or a help page.
        Some(Box::new(names.into_iter().map(|n| {
            clap::builder::PossibleValue::new(&*Box::leak(n.into_boxed_str()))
        })))
    }
}
