//! Embeds every workflow's phase manifests (`phases/<workflow>/*.toml`, with the workflow's own
//! `workflow.toml`), so the graphs come from those files and nothing else. A new manifest is
//! picked up without touching the code; a test then insists it has an implementation.

use std::{env, fs, path::Path};

fn main() {
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
        "/// (workflow, file stem, contents) of every phases/<workflow>/*.toml, sorted by path; the stem\n/// `workflow` is the workflow's own manifest.\npub static MANIFEST_SOURCES: &[(&str, &str, &str)] = &[\n",
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
                "    ({workflow:?}, {stem:?}, include_str!({:?})),\n",
                p.display().to_string()
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
