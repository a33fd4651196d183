//! Hostile input (`fixtures/bad/cases.toml`): every case must give its documented exit code, one
//! error line naming the cause, no panic, and no file written under the root.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize)]
struct Cases {
    case: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    file: Option<String>,
    args: Vec<String>,
    exit: i32,
    expect: String,
    env: Option<BTreeMap<String, String>>,
    stdin: Option<String>,
    setup: Option<String>,
    /// For `setup = "plant"`: where under the root the case file is planted, and its mode.
    plant: Option<String>,
    mode: Option<String>,
    /// For `setup = "link"`: a directory under the root made a link to a directory outside it.
    link: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ClusterInfoCase {
    kubeconfig: String,
    jws: String,
}

const CI_TOKEN: &str = "badci1.0123456789abcdef";

fn fixtures() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures"))
}

/// Every path under `dir` with its size and modification time.
fn snapshot(dir: &Path) -> Vec<(String, u64, i128)> {
    let mut out: Vec<(String, u64, i128)> = walk(dir)
        .into_iter()
        .map(|(p, m)| {
            let mtime = m.modified().unwrap().duration_since(std::time::UNIX_EPOCH);
            let mtime = mtime.unwrap().as_nanos() as i128;
            (p.display().to_string(), m.len(), mtime)
        })
        .collect();
    out.sort();
    out
}

/// Plants the case's cluster-info in the (controller-less) sandbox.
fn plant_cluster_info(sb: &TestSandbox, case: &ClusterInfoCase) {
    let token = bootlet::token::BootstrapToken::parse(CI_TOKEN).unwrap();
    let other_ca = bootlet::pki::ca::Ca::generate("kubernetes").unwrap();
    let render =
        |ca: &str| bootlet::kubeconfig::render_cluster_info(&sb.url(), ca.as_bytes()).unwrap();
    let kubeconfig = match case.kubeconfig.as_str() {
        "valid" | "absent" => render(sb.sb().ca_pem()),
        "not-yaml" => "apiVersion: v1\nclusters: [ {{{ not: yaml".to_string(),
        "http-server" => render(sb.sb().ca_pem()).replace("https://", "http://"),
        "other-ca" => render(other_ca.cert_pem()),
        "no-clusters" => "apiVersion: v1\nkind: Config\nclusters: []\n".to_string(),
        "ca-not-pem" => {
            bootlet::kubeconfig::render_cluster_info(&sb.url(), b"not a certificate").unwrap()
        }
        other => panic!("unknown kubeconfig kind {other}"),
    };
    let jws = match case.jws.as_str() {
        "valid" => Some(bootlet::pki::jws::sign_detached(&kubeconfig, &token)),
        "garbage" => Some("eyJhbGciOiJIUzI1NiIsImtpZCI6ImJhZGNpMSJ9..not-a-signature".to_string()),
        "other-secret" => Some(bootlet::pki::jws::sign_detached(
            &kubeconfig,
            &bootlet::token::BootstrapToken::parse("badci1.ffffffffffffffff").unwrap(),
        )),
        "wrong-kid" => {
            let other = bootlet::token::BootstrapToken::parse("other1.0123456789abcdef").unwrap();
            Some(bootlet::pki::jws::sign_detached(&kubeconfig, &other))
        }
        "absent" => None,
        other => panic!("unknown jws kind {other}"),
    };
    let mut data = serde_json::Map::new();
    if case.kubeconfig != "absent" {
        data.insert("kubeconfig".into(), json!(kubeconfig));
    }
    if let Some(j) = jws {
        data.insert("jws-kubeconfig-badci1".into(), json!(j));
    }
    sb.sb().put("configmaps", "kube-public", json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cluster-info", "namespace": "kube-public"}, "data": data}));
}

#[test]
fn every_hostile_input_gets_a_clear_error_its_exit_code_and_leaves_no_trace() {
    let text = std::fs::read_to_string(fixtures().join("bad/cases.toml")).unwrap();
    let cases: Cases = toml::from_str(&text).unwrap();
    assert!(
        cases.case.len() >= 50,
        "at least 50 cases ({})",
        cases.case.len()
    );
    let sb = TestSandbox::configured(|o| o.run_controllers = false);
    let work = tempfile::tempdir().unwrap();
    let good_discovery = offline_discovery_file(work.path());
    let mut failures = Vec::new();
    let mut categories = std::collections::BTreeSet::new();
    for case in &cases.case {
        categories.insert(case.name.split('-').next().unwrap().to_string());
        let root = tempfile::tempdir().unwrap();
        let input = case.file.as_ref().map(|f| fixtures().join("bad").join(f));
        let outside = tempfile::tempdir().unwrap();
        let plant = |rel: &str, mode: u32| {
            use std::os::unix::fs::PermissionsExt;
            let dest = root.path().join(rel);
            for d in dest.ancestors().skip(1).take_while(|d| *d != root.path()) {
                std::fs::create_dir_all(d).unwrap();
                std::fs::set_permissions(d, PermissionsExt::from_mode(0o700)).unwrap();
            }
            std::fs::copy(input.as_ref().unwrap(), &dest).unwrap();
            std::fs::set_permissions(&dest, PermissionsExt::from_mode(mode)).unwrap();
        };
        let mode = u32::from_str_radix(case.mode.as_deref().unwrap_or("0600"), 8).unwrap();
        match case.setup.as_deref() {
            // As bootlet writes it (0600), so that its content is what is judged.
            Some("journal") => plant("var/lib/bootlet/journal.toml", mode),
            Some("plant") => plant(case.plant.as_deref().expect("plant = path"), mode),
            Some("link") => {
                let link = root.path().join(case.link.as_deref().expect("link = path"));
                std::fs::create_dir_all(link.parent().unwrap()).unwrap();
                std::os::unix::fs::symlink(outside.path(), &link).unwrap();
            }
            Some("cluster-info") => {
                let ci: ClusterInfoCase =
                    toml::from_str(&std::fs::read_to_string(input.as_ref().unwrap()).unwrap())
                        .unwrap();
                plant_cluster_info(&sb, &ci);
            }
            None => {}
            Some(other) => panic!("unknown setup {other}"),
        }
        let before = snapshot(root.path());
        let sub = |a: &str| {
            a.replace("{root}", root.path().to_str().unwrap())
                .replace(
                    "{input}",
                    input.as_ref().map(|p| p.to_str().unwrap()).unwrap_or(""),
                )
                .replace("{endpoint}", &sb.endpoint())
                .replace("{pin}", &sb.pin())
                .replace("{good_discovery}", good_discovery.to_str().unwrap())
                .replace("{fixtures}", fixtures().to_str().unwrap())
        };
        let args: Vec<String> = case.args.iter().map(|a| sub(a)).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = case
            .env
            .iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let run = match &case.stdin {
            Some(s) => bootlet_stdin(&args, s),
            None => bootlet_env(&args, &env),
        };
        let errors = run.stderr_lines(|l| l.starts_with("error:"));
        let mut problems = Vec::new();
        if run.code != case.exit {
            problems.push(format!("exit {} (want {})", run.code, case.exit));
        }
        if errors.len() != 1 {
            problems.push(format!("{} error lines", errors.len()));
        } else if !errors[0].contains(&case.expect) {
            problems.push(format!("error line lacks {:?}", case.expect));
        }
        if run.stderr.contains("panicked") || run.stderr.contains("RUST_BACKTRACE") {
            problems.push("panicked".into());
        }
        if snapshot(root.path()) != before {
            problems.push(format!(
                "wrote under the root: {:?}",
                files_under(root.path())
            ));
        }
        if std::fs::read_dir(outside.path()).unwrap().next().is_some() {
            problems.push(format!(
                "wrote outside the root: {:?}",
                files_under(outside.path())
            ));
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{}: {}\n    stderr: {}",
                case.name,
                problems.join("; "),
                run.stderr.trim().replace('\n', "\n            ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.case.len(),
        failures.join("\n")
    );
    for c in [
        "token",
        "bootstrap",
        "ca",
        "pin",
        "config",
        "journal",
        "cluster",
        "flag",
        "state",
        "link",
    ] {
        assert!(categories.contains(c), "no {c} cases");
    }
}
