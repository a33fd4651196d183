//! The conformance corpus as written under `fixtures/conformance/`: one TOML file a topic, each
//! `[[case]]` a request (or a short sequence of `[[case.step]]`s) sent as each identity in its
//! `as` list. A case expands into one case an identity, named `file/name [identity]`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Who sends a request. The tokens and nodes are set up by the replay before the first case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Identity {
    /// No credentials at all.
    Anonymous,
    /// A bootstrap token with both usages, in kubeadm's default node group.
    Token,
    /// A registered bootstrap token whose expiration has passed.
    TokenExpired,
    /// A well-formed bootstrap token no Secret holds.
    TokenUnknown,
    /// A bootstrap token whose Secret lacks `usage-bootstrap-authentication`.
    TokenNoAuth,
    /// A bootstrap token with `auth-extra-groups`.
    TokenExtra,
    /// A node's client certificate (`system:node:conf-node-1`, `system:nodes`).
    Node,
    /// Another node's client certificate (`system:node:conf-node-2`).
    OtherNode,
    /// The cluster admin (`system:masters`).
    Admin,
    /// The admin impersonating the node (user and `system:nodes`).
    AdminAsNode,
    /// The admin impersonating the valid token's user and groups.
    AdminAsToken,
    /// The admin impersonating a user with no groups.
    AdminAsNobody,
    /// The node asking to impersonate the admin group.
    NodeAsAdmin,
}

impl Identity {
    pub const ALL: [Identity; 13] = [
        Identity::Anonymous,
        Identity::Token,
        Identity::TokenExpired,
        Identity::TokenUnknown,
        Identity::TokenNoAuth,
        Identity::TokenExtra,
        Identity::Node,
        Identity::OtherNode,
        Identity::Admin,
        Identity::AdminAsNode,
        Identity::AdminAsToken,
        Identity::AdminAsNobody,
        Identity::NodeAsAdmin,
    ];

    /// The name a case's `as` uses.
    pub fn key(self) -> &'static str {
        match self {
            Identity::Anonymous => "anonymous",
            Identity::Token => "token",
            Identity::TokenExpired => "token-expired",
            Identity::TokenUnknown => "token-unknown",
            Identity::TokenNoAuth => "token-no-auth",
            Identity::TokenExtra => "token-extra-groups",
            Identity::Node => "node",
            Identity::OtherNode => "other-node",
            Identity::Admin => "admin",
            Identity::AdminAsNode => "admin-as-node",
            Identity::AdminAsToken => "admin-as-token",
            Identity::AdminAsNobody => "admin-as-nobody",
            Identity::NodeAsAdmin => "node-as-admin",
        }
    }

    fn parse(s: &str) -> Result<Identity, String> {
        Self::ALL
            .into_iter()
            .find(|i| i.key() == s)
            .ok_or_else(|| format!("unknown identity {s:?}"))
    }
}

/// How a step builds a CSR for the `{csr}` placeholder (base64 of its PEM).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CsrSpec {
    #[serde(default)]
    pub cn: String,
    #[serde(default)]
    pub o: Vec<String>,
    #[serde(default)]
    pub dns: Vec<String>,
    #[serde(default)]
    pub ips: Vec<String>,
    #[serde(default)]
    pub emails: Vec<String>,
    /// `ec` (P-256, the default), `rsa` or `ed25519`.
    #[serde(default)]
    pub key: Option<String>,
}

/// One request as the corpus writes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Who sends it when not the case's identity (setup done by the admin).
    #[serde(rename = "as", default)]
    pub who: Option<String>,
    /// `METHOD /path?query`.
    pub request: String,
    /// The body, JSON with placeholders (`{id}`, `{node}`, `{other}`, `{csr}`, `{rv}`,
    /// `{big:N}`, `{b64:text}`).
    #[serde(default)]
    pub body: Option<String>,
    /// Content type of the body (JSON unless said).
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub csr: Option<CsrSpec>,
    /// The fields of the answer a client reads (see `answer::read_path`).
    #[serde(default)]
    pub read: Vec<String>,
    /// Repeat a GET until this field is present (a controller's work), up to 20 s.
    #[serde(default)]
    pub until: Option<String>,
    /// A watch: read this many events, and any that follow within half a second unless
    /// `settle` is false (a controller's later updates would make the count a race).
    #[serde(default)]
    pub watch: Option<usize>,
    #[serde(default = "yes")]
    pub settle: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseToml {
    name: String,
    #[serde(rename = "as")]
    who: Vec<String>,
    /// Why the sandbox answers otherwise, as `D<n>: …`; docs/testing.md lists each `D<n>`.
    #[serde(default)]
    sandbox_differs: Option<String>,
    /// The workflows that send this request (join, renew, reset, token, approver).
    #[serde(default)]
    workflow: Vec<String>,
    #[serde(default)]
    step: Vec<Step>,
    // A one-request case writes its request's fields on the case itself.
    #[serde(default)]
    request: Option<String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    csr: Option<CsrSpec>,
    #[serde(default)]
    read: Vec<String>,
    #[serde(default)]
    until: Option<String>,
    #[serde(default)]
    watch: Option<usize>,
    #[serde(default = "yes")]
    settle: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    case: Vec<CaseToml>,
}

/// One case of the corpus for one identity.
#[derive(Debug, Clone)]
pub struct Case {
    /// `file/name [identity]`: the golden's key.
    pub name: String,
    /// The corpus file's stem.
    pub file: String,
    pub who: Identity,
    pub steps: Vec<Step>,
    pub sandbox_differs: Option<String>,
    pub workflow: Vec<String>,
}

const WORKFLOWS: [&str; 5] = ["join", "renew", "reset", "token", "approver"];

/// Every case under `dir`, in file then corpus order.
pub fn load(dir: &Path) -> Result<Vec<Case>, String> {
    let mut cases = Vec::new();
    for path in corpus_files(dir)? {
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{path:?}: {e}"))?;
        let file: FileToml = toml::from_str(&text).map_err(|e| format!("{path:?}: {e}"))?;
        let stem = stem(&path);
        for c in file.case {
            expand(&stem, c, &mut cases).map_err(|e| format!("{path:?}: {e}"))?;
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for c in &cases {
        if !seen.insert(c.name.clone()) {
            return Err(format!("two cases are named {:?}", c.name));
        }
    }
    Ok(cases)
}

/// The `*.toml` files of the corpus, sorted.
pub fn corpus_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{dir:?}: {e}"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

/// `csrs` for `fixtures/conformance/csrs.toml`.
pub fn stem(path: &Path) -> String {
    path.file_stem().unwrap().to_string_lossy().into_owned()
}

fn expand(file: &str, c: CaseToml, out: &mut Vec<Case>) -> Result<(), String> {
    let steps = match (c.request, c.step.is_empty()) {
        (Some(request), true) => vec![Step {
            who: None,
            request,
            body: c.body,
            content_type: c.content_type,
            headers: c.headers,
            csr: c.csr,
            read: c.read,
            until: c.until,
            watch: c.watch,
            settle: c.settle,
        }],
        (None, false) => c.step,
        _ => {
            return Err(format!(
                "case {:?}: write either `request` or `[[case.step]]`s",
                c.name
            ));
        }
    };
    for w in &c.workflow {
        if !WORKFLOWS.contains(&w.as_str()) {
            return Err(format!("case {:?}: unknown workflow {w:?}", c.name));
        }
    }
    if !c.workflow.is_empty() && c.sandbox_differs.is_some() {
        return Err(format!(
            "case {:?}: a request a workflow sends must answer as the real server does",
            c.name
        ));
    }
    if c.who.is_empty() {
        return Err(format!("case {:?}: `as` names no identity", c.name));
    }
    for who in &c.who {
        let who = Identity::parse(who)?;
        for s in &steps {
            if let Some(w) = &s.who {
                Identity::parse(w)?;
            }
        }
        out.push(Case {
            name: format!("{file}/{} [{}]", c.name, who.key()),
            file: file.to_string(),
            who,
            steps: steps.clone(),
            sandbox_differs: c.sandbox_differs.clone(),
            workflow: c.workflow.clone(),
        });
    }
    Ok(())
}

impl Step {
    /// The identity this step is sent as.
    pub fn sender(&self, case: Identity) -> Identity {
        self.who
            .as_deref()
            .map(|w| Identity::parse(w).unwrap())
            .unwrap_or(case)
    }

    /// `(method, path)`.
    pub fn method_and_path(&self) -> (&str, &str) {
        self.request
            .split_once(' ')
            .unwrap_or(("GET", self.request.as_str()))
    }
}
