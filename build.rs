//! Embeds every `phases/*.toml` manifest, so the phase graph comes from those files and nothing
//! else. A new manifest is picked up without touching the code; a test then insists it has an
//! implementation.

use std::{env, fs, path::Path};

fn main() {
    let dir = Path::new(&env::var("CARGO_MANIFEST_DIR").unwrap()).join("phases");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut entries: Vec<_> = fs::read_dir(&dir)
        .expect("phases/ directory")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    entries.sort();
    let mut out = String::from(
        "/// (file stem, contents) of every phases/*.toml, sorted by name.\npub static MANIFEST_SOURCES: &[(&str, &str)] = &[\n",
    );
    for p in &entries {
        println!("cargo:rerun-if-changed={}", p.display());
        let stem = p.file_stem().unwrap().to_string_lossy();
        out.push_str(&format!(
            "    ({stem:?}, include_str!({:?})),\n",
            p.display().to_string()
        ));
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
