//! The sandbox held to the real API server, request by request (issue 27). The corpus is under
//! `fixtures/conformance/`, the real control plane's answers beside it (`*.golden.json`);
//! `tests/common/conformance/` says how a case is written, sent and compared.

mod common;
#[path = "common/conformance/mod.rs"]
mod conformance;

use common::cluster::Plane;
use conformance::corpus::Identity;

#[test]
fn the_corpus_is_large_covers_every_identity_and_its_goldens_are_complete() {
    let cases = conformance::cases();
    assert!(cases.len() >= 250, "the corpus has {} cases", cases.len());
    for who in Identity::ALL {
        assert!(
            cases.iter().any(|c| c.who == who),
            "no case is sent as {}",
            who.key()
        );
    }
    let goldens = conformance::goldens();
    let missing: Vec<&str> = cases
        .iter()
        .filter(|c| !goldens.answers.contains_key(&c.name))
        .map(|c| c.name.as_str())
        .collect();
    assert!(
        missing.is_empty(),
        "cases without a golden (record them: BOOTLET_RECORD_CONFORMANCE=1 cargo test --test conformance on_real): {missing:#?}"
    );
    let stale: Vec<&String> = goldens
        .answers
        .keys()
        .filter(|k| !cases.iter().any(|c| &c.name == *k))
        .collect();
    assert!(stale.is_empty(), "goldens of no case: {stale:#?}");
    assert_eq!(goldens.releases.len(), 1, "goldens of several releases");
    let failing = cases
        .iter()
        .filter(|c| {
            goldens.answers[&c.name]
                .iter()
                .any(|a| a["code"].as_u64().is_some_and(|code| code >= 400))
        })
        .count();
    assert!(
        failing * 3 >= cases.len(),
        "{failing} of {} cases are refused by the real API server; a third must be",
        cases.len()
    );
}

#[test]
fn every_difference_the_sandbox_keeps_is_explained_in_docs_testing() {
    let docs =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/testing.md")).unwrap();
    for c in conformance::cases() {
        if let Some(why) = &c.sandbox_differs {
            let id = why.split(':').next().unwrap();
            assert!(
                id.starts_with('D') && docs.contains(&format!("| {id} |")),
                "{}: its difference {id:?} is not in docs/testing.md's table",
                c.name
            );
        }
    }
}

#[test]
fn on_sandbox_the_corpus_answers_as_the_real_api_server_recorded() {
    let cases = conformance::cases();
    let cluster = Plane::Sandbox.own();
    let answers = conformance::replay_all(&cluster, &cases);
    let report = conformance::Report::compare(&cases, &answers, &conformance::goldens());
    let text = report.text();
    conformance::announce(&text, "conformance-sandbox.txt");
    let workflows_differ: Vec<&str> = report
        .differences
        .iter()
        .filter(|d| !d.case.workflow.is_empty())
        .map(|d| d.case.name.as_str())
        .collect();
    assert!(
        workflows_differ.is_empty(),
        "requests bootlet's workflows send answer otherwise than on the real API server: {workflows_differ:#?}\n{text}"
    );
    let unexplained: Vec<&str> = report
        .differences
        .iter()
        .filter(|d| d.case.sandbox_differs.is_none())
        .map(|d| d.case.name.as_str())
        .collect();
    assert!(
        unexplained.is_empty(),
        "the sandbox answers otherwise than the real API server:\n{text}"
    );
    let stale: Vec<&str> = cases
        .iter()
        .filter(|c| c.sandbox_differs.is_some())
        .filter(|c| !report.differences.iter().any(|d| d.case.name == c.name))
        .map(|c| c.name.as_str())
        .collect();
    assert!(
        stale.is_empty(),
        "cases marked sandbox_differs that now answer as the real server (drop the mark): {stale:#?}"
    );
}

#[test]
#[cfg_attr(real_cluster_off, ignore = "BOOTLET_REAL_CLUSTER=off")]
fn on_real_the_corpus_answers_as_recorded() {
    let cases = conformance::cases();
    let cluster = Plane::Real.own();
    let answers = conformance::replay_all(&cluster, &cases);
    let version = cluster.kubectl(&["get", "--raw", "/version"]);
    let version: serde_json::Value = serde_json::from_str(&version.stdout).unwrap();
    let release = version["gitVersion"].as_str().unwrap().to_string();
    if std::env::var("BOOTLET_RECORD_CONFORMANCE").is_ok_and(|v| v == "1") {
        conformance::record(&cases, &answers, &release);
        conformance::announce(
            &format!(
                "conformance: recorded {} cases from {release}\n",
                cases.len()
            ),
            "conformance-real.txt",
        );
        return;
    }
    let goldens = conformance::goldens();
    let report = conformance::Report::compare(&cases, &answers, &goldens);
    let text = format!(
        "the live {release} against the goldens of {:?}: {}",
        goldens.releases,
        report.text()
    );
    conformance::announce(&text, "conformance-real.txt");
    assert!(
        report.differences.is_empty(),
        "the real API server no longer answers as recorded (a new release, or a case that depends on timing):\n{text}"
    );
}
