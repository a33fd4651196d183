//! The sandbox held to the real API server request by request (issue 27): a corpus of requests
//! under `fixtures/conformance/`, the real control plane's answers recorded beside it as goldens,
//! and a replay that compares any control plane's answers with them.
//!
//! Recording: `BOOTLET_RECORD_CONFORMANCE=1 cargo test --test conformance on_real` replays the
//! corpus on a new real control plane and rewrites `*.golden.json` (with the release they came
//! from). Without it the same test compares, so a release that answers otherwise fails a case.

pub mod answer;
pub mod corpus;
pub mod replay;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::common::cluster::TestCluster;
use answer::Answer;
use corpus::Case;

/// `fixtures/conformance/`.
pub fn corpus_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/conformance"))
}

/// Every case of the corpus.
pub fn cases() -> Vec<Case> {
    corpus::load(&corpus_dir()).unwrap_or_else(|e| panic!("the conformance corpus: {e}"))
}

/// Each case's answers from `cluster`, by case name.
pub fn replay_all(cluster: &TestCluster, cases: &[Case]) -> BTreeMap<String, Vec<Answer>> {
    let replay = replay::Replay::prepare(cluster);
    cases
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.clone(), replay.run(i, c)))
        .collect()
}

/// The goldens: the release they were recorded from, and each case's answers.
pub struct Goldens {
    pub releases: Vec<String>,
    pub answers: BTreeMap<String, Vec<Answer>>,
}

/// `csrs.toml` → `csrs.golden.json`.
fn golden_path(corpus_file: &Path) -> PathBuf {
    corpus_file.with_extension("golden.json")
}

/// Reads every golden file beside the corpus.
pub fn goldens() -> Goldens {
    let mut g = Goldens {
        releases: Vec::new(),
        answers: BTreeMap::new(),
    };
    for file in corpus::corpus_files(&corpus_dir()).unwrap() {
        let path = golden_path(&file);
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        let release = v["release"].as_str().unwrap_or_default().to_string();
        if !g.releases.contains(&release) {
            g.releases.push(release);
        }
        for (name, answers) in v["cases"].as_object().into_iter().flatten() {
            let steps = answers.as_array().cloned().unwrap_or_default();
            g.answers.insert(name.clone(), steps);
        }
    }
    g
}

/// Writes `answers` as the goldens of `release`, one file per corpus file.
pub fn record(cases: &[Case], answers: &BTreeMap<String, Vec<Answer>>, release: &str) {
    for file in corpus::corpus_files(&corpus_dir()).unwrap() {
        let stem = corpus::stem(&file);
        let of_file: serde_json::Map<String, Value> = cases
            .iter()
            .filter(|c| c.file == stem)
            .map(|c| (c.name.clone(), json!(answers[&c.name])))
            .collect();
        let text =
            serde_json::to_string_pretty(&json!({"release": release, "cases": of_file})).unwrap();
        std::fs::write(golden_path(&file), text + "\n").unwrap();
    }
}

/// One case whose answer is not the golden's.
pub struct Difference {
    pub case: Case,
    pub golden: Option<Vec<Answer>>,
    pub actual: Vec<Answer>,
}

/// How a control plane's answers compare with the goldens.
pub struct Report {
    pub total: usize,
    pub differences: Vec<Difference>,
    /// The cases a workflow (join, renew, reset, token, approver) sends.
    pub workflow_cases: usize,
}

impl Report {
    pub fn compare(
        cases: &[Case],
        actual: &BTreeMap<String, Vec<Answer>>,
        goldens: &Goldens,
    ) -> Report {
        let differences = cases
            .iter()
            .filter_map(|c| {
                let golden = goldens.answers.get(&c.name).cloned();
                let got = actual[&c.name].clone();
                (golden.as_ref() != Some(&got)).then(|| Difference {
                    case: c.clone(),
                    golden,
                    actual: got,
                })
            })
            .collect();
        Report {
            total: cases.len(),
            differences,
            workflow_cases: cases.iter().filter(|c| !c.workflow.is_empty()).count(),
        }
    }

    /// `conformance: N of M cases answer as the real API server`.
    pub fn score_line(&self) -> String {
        format!(
            "conformance: {} of {} cases answer as the real API server",
            self.total - self.differences.len(),
            self.total
        )
    }

    /// `workflows: N of M cases the workflows send answer as the real API server`.
    pub fn workflow_line(&self) -> String {
        let differing = self
            .differences
            .iter()
            .filter(|d| !d.case.workflow.is_empty())
            .count();
        format!(
            "workflows: {} of {} cases the join, renew, reset, token and approver workflows send answer as the real API server",
            self.workflow_cases - differing,
            self.workflow_cases
        )
    }

    /// The score and each difference: the case, why it stays (or that nothing says so), the
    /// first step that differs as golden then actual.
    pub fn text(&self) -> String {
        let mut out = self.score_line() + "\n" + &self.workflow_line() + "\n";
        for d in &self.differences {
            let why = d.case.sandbox_differs.as_deref().unwrap_or("UNEXPLAINED");
            out += &format!("  {} — {why}\n", d.case.name);
            match &d.golden {
                None => out += "      no golden recorded for this case\n",
                Some(g) => {
                    let i = (0..g.len().max(d.actual.len()))
                        .find(|&i| g.get(i) != d.actual.get(i))
                        .unwrap_or(0);
                    let show = |v: Option<&Value>| v.map(Value::to_string).unwrap_or("-".into());
                    out += &format!("      step {}: real   {}\n", i + 1, show(g.get(i)));
                    out += &format!("      step {}: here   {}\n", i + 1, show(d.actual.get(i)));
                }
            }
        }
        out
    }
}

/// Shows `text` in the test run's output even though the test passes (cargo captures a passing
/// test's prints; the score is this test's product), and keeps it in `target/`.
pub fn announce(text: &str, file_name: &str) {
    use std::io::Write;
    if let Ok(mut err) = std::fs::OpenOptions::new().write(true).open("/dev/stderr") {
        let _ = err.write_all(text.as_bytes());
    }
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target"));
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join(file_name), text);
}
