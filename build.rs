//! Embeds every workflow's phase manifests (`phases/<workflow>/*.toml`, with the workflow's own
//! `workflow.toml`), so the graphs come from those files and nothing else. A new manifest is
//! picked up without touching the code; a test then insists it has an implementation.
//!
//! The TOML is read here and embedded as JSON: a manifest that is not valid TOML fails the build
//! (naming the file), and a run decodes JSON, which costs a tenth of parsing TOML on every start
//! (docs/performance.md, "Start-up").

use std::{env, fs, path::Path};

fn main() {
    real_cluster_switch();
    let dir = Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap()).join("phases");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut workflows: Vec<_> = fs::read_dir(&dir)
        .expect("phases/ directory")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    workflows.sort();
    let mut out = String::from(
        "/// (workflow, file stem, contents as JSON) of every phases/<workflow>/*.toml, sorted by path; the\n/// stem `workflow` is the workflow's own manifest.\npub static MANIFEST_SOURCES: &[(&str, &str, &str)] = &[\n",
    );
    for w in &workflows {
        println!("cargo:rerun-if-changed={}", w.display());
        let workflow = w.file_name().unwrap().to_string_lossy().into_owned();
        let mut entries: Vec<_> = fs::read_dir(w)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        entries.sort();
        for p in &entries {
            println!("cargo:rerun-if-changed={}", p.display());
            let stem = p.file_stem().unwrap().to_string_lossy();
            out.push_str(&format!(
                "    ({workflow:?}, {stem:?}, {:?}),\n",
                manifest_json(p)
            ));
        }
    }
    out.push_str("];\n");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    out.push_str(&format!("/// When this binary was built (unix seconds): a floor for the clock check.\npub const BUILD_UNIX: i64 = {now};\n"));
    fs::write(
        Path::new(&env::var("OUT_DIR").unwrap()).join("manifests.rs"),
        out,
    )
    .unwrap();
}

/// The manifest at `path` as JSON; a file that is not TOML stops the build with the parser's
/// message.
fn manifest_json(path: &Path) -> String {
    let text = fs::read_to_string(path).expect("readable manifest");
    let table: toml::Table = toml::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid TOML: {e}", path.display()));
    serde_json::to_string(&table).expect("a TOML table is JSON")
}

/// `BOOTLET_REAL_CLUSTER=off` compiles the tests that need the real control plane as ignored
/// (`cfg(real_cluster_off)`), so that leaving them out is explicit and cargo's summary line counts
/// them; any other value, or none, runs them (tests/common/real.rs).
fn real_cluster_switch() {
    println!("cargo::rustc-check-cfg=cfg(real_cluster_off)");
    println!("cargo:rerun-if-env-changed=BOOTLET_REAL_CLUSTER");
    if env::var("BOOTLET_REAL_CLUSTER").is_ok_and(|v| v == "off") {
        println!("cargo:rustc-cfg=real_cluster_off");
    }
}
