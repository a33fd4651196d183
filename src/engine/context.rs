//! What a phase sees: settings, the layout, the world of files, the journal, the gate for API
//! requests, and lazily resolved shared inputs (the token, the trusted cluster).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::graph::PhaseGraph;
use super::parsed_once::ParsedOnce;
use super::world::World;
use crate::cluster::{Cluster, Gate};
use crate::error::{Error, ErrorKind, Result};
use crate::files::Layout;
use crate::kubeconfig::ClusterAccess;
use crate::output::Output;
use crate::pki::ca::Ca;
use crate::settings::{Settings, TokenSource};
use crate::token::BootstrapToken;

/// Where this run's token came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenOrigin {
    /// `--token` (argv or config file).
    Flag,
    /// `BOOTLET_TOKEN`.
    Env,
    /// `--token-file FILE`.
    File(PathBuf),
    /// `--token-file -`.
    Stdin,
    /// The `--bootstrap-kubeconfig` user.
    BootstrapKubeconfig(PathBuf),
    /// The state file an earlier run wrote.
    StateFile,
}

impl TokenOrigin {
    /// Whether the token was given this run (and so must be persisted for later phases).
    pub fn is_given(&self) -> bool {
        matches!(
            self,
            TokenOrigin::Flag | TokenOrigin::Env | TokenOrigin::File(_) | TokenOrigin::Stdin
        )
    }

    /// Human description.
    pub fn describe(&self) -> String {
        match self {
            TokenOrigin::Flag => "--token".into(),
            TokenOrigin::Env => "BOOTLET_TOKEN".into(),
            TokenOrigin::File(p) => format!("--token-file {}", p.display()),
            TokenOrigin::Stdin => "standard input".into(),
            TokenOrigin::BootstrapKubeconfig(p) => {
                format!("the bootstrap kubeconfig {}", p.display())
            }
            TokenOrigin::StateFile => "the state file of an earlier run".into(),
        }
    }
}

/// The run context.
pub struct Ctx {
    /// Resolved settings.
    pub settings: Settings,
    /// Paths.
    pub layout: Layout,
    /// Files, and the journal (the memory of earlier runs).
    pub world: World,
    /// Progress output.
    pub out: Output,
    /// API request gate.
    pub gate: Arc<Gate>,
    /// The phase graph.
    pub graph: Arc<PhaseGraph>,
    phase: String,
    actions: Vec<String>,
    dry_ca: Option<Arc<Ca>>,
    token: Option<(BootstrapToken, TokenOrigin)>,
    token_resolved: bool,
    token_passed_over: Option<String>,
    stdin_text: Option<String>,
    admin: Option<Cluster>,
    given_kubeconfigs: ParsedOnce<ClusterAccess>,
    /// The cluster record, parsed once per content (most phases' checks read it).
    pub(crate) cluster_records: ParsedOnce<crate::phases::cluster_record::ClusterRecord>,
}

impl Ctx {
    /// A context.
    pub fn new(
        settings: Settings,
        layout: Layout,
        world: World,
        out: Output,
        graph: Arc<PhaseGraph>,
    ) -> Ctx {
        Ctx {
            settings,
            layout,
            world,
            out,
            gate: Arc::new(Gate::default()),
            graph,
            phase: String::new(),
            actions: Vec::new(),
            dry_ca: None,
            token: None,
            token_resolved: false,
            token_passed_over: None,
            stdin_text: None,
            admin: None,
            given_kubeconfigs: Default::default(),
            cluster_records: Default::default(),
        }
    }

    /// A kubeconfig the operator gave this run (bootstrap, admin, discovery file), parsed once per
    /// run: several phases' checks read it, and it is read again each time but parsed again only
    /// when its text changed.
    pub fn given_kubeconfig(&self, path: &Path, what: &str) -> Result<ClusterAccess> {
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e).context(what))?;
        self.given_kubeconfigs
            .get(&path.to_string_lossy(), &text, || {
                crate::kubeconfig::parse_file_text(&text, path, what)
            })
    }

    /// The workflow being run (`join`, `renew`, `reset`).
    pub fn workflow(&self) -> &str {
        self.graph.name()
    }

    /// The phase being run or checked.
    pub fn phase(&self) -> &str {
        &self.phase
    }

    pub(crate) fn set_phase(&mut self, name: &str) {
        self.phase = name.to_string();
    }

    pub(crate) fn take_actions(&mut self) -> Vec<String> {
        std::mem::take(&mut self.actions)
    }

    /// Whether this is a dry-run.
    pub fn dry_run(&self) -> bool {
        self.world.is_dry_run()
    }

    /// "Created" for a request that was sent, "Would create" in a dry-run, where mutations are
    /// recorded and not sent: the text says what the JSON report says.
    pub fn sent(&self, done: &'static str, would: &'static str) -> &'static str {
        if self.dry_run() { would } else { done }
    }

    /// Prints `[phase] msg` and records it as an action for the report.
    pub fn act(&mut self, msg: impl Into<String>) {
        let msg = msg.into();
        self.out.say(&self.phase, &msg);
        self.actions.push(msg);
    }

    /// A warning line.
    pub fn warn(&mut self, msg: impl Into<String>) {
        let msg = msg.into();
        self.out.warn(&self.phase, &msg);
        self.actions.push(format!("WARNING: {msg}"));
    }

    /// Writes the journal atomically and durably.
    pub fn save_journal(&mut self) -> Result<()> {
        self.world.save_journal(true)
    }

    /// Records a public fact for the current phase and saves the journal now: for facts that must
    /// be durable before the action that follows (a key's fingerprint before the key is written).
    pub fn fact(&mut self, key: &str, value: &str) -> Result<()> {
        self.note(key, value);
        self.save_journal()
    }

    /// Records a public fact for the current phase; it is saved with the phase's outcome. Each
    /// save is an fsync'd write, so facts that nothing depends on mid-phase wait for that one.
    pub fn note(&mut self, key: &str, value: &str) {
        let phase = self.phase.clone();
        self.world.journal.set_fact(&phase, key, value);
    }

    /// A fact recorded for `phase`.
    pub fn fact_of(&self, phase: &str, key: &str) -> Option<String> {
        self.world.journal.fact(phase, key).map(str::to_string)
    }

    /// The "missing input" error, naming who produces it (from the manifest).
    pub fn missing(&self, input: &str, detail: impl std::fmt::Display) -> Error {
        let from = self
            .graph
            .get(&self.phase)
            .and_then(|m| m.inputs.iter().find(|i| i.name == input))
            .map(|i| i.from.clone())
            .unwrap_or_default();
        let how = if from.starts_with("--") {
            format!("give {from}")
        } else if let Some(w) = from.strip_prefix("workflow:") {
            format!("`bootlet {w}` makes it: this root has not been through `bootlet {w}` yet")
        } else if from.is_empty() {
            "provide it".to_string()
        } else {
            format!(
                "phase {from} produces it: run `bootlet phase {from}` first (or `bootlet join`)"
            )
        };
        Error::new(
            ErrorKind::MissingInput,
            format!("phase {} needs the {input} ({detail}); {how}", self.phase),
        )
    }

    /// The throw-away CA that answers for the cluster in a dry-run.
    pub fn dry_ca(&mut self) -> Result<Arc<Ca>> {
        if let Some(ca) = &self.dry_ca {
            return Ok(ca.clone());
        }
        let ca = Arc::new(Ca::generate("bootlet-dry-run-ca (not a real cluster CA)")?);
        self.dry_ca = Some(ca.clone());
        Ok(ca)
    }

    /// The dry-run CA if one was made this run.
    pub fn dry_ca_if_any(&self) -> Option<Arc<Ca>> {
        self.dry_ca.clone()
    }

    /// A client for `access` as `identity`, through this run's gate.
    pub fn cluster(&self, access: &ClusterAccess, identity: &'static str) -> Result<Cluster> {
        Cluster::new(
            access,
            identity,
            self.gate.clone(),
            self.dry_run(),
            self.settings.api_timeout,
        )
        .map(|c| c.with_notices(self.out))
    }

    /// The admin client, if `--admin-kubeconfig` was given.
    pub fn admin(&mut self) -> Result<Option<Cluster>> {
        if let Some(c) = &self.admin {
            return Ok(Some(c.clone()));
        }
        let Some(path) = self.settings.admin_kubeconfig.clone() else {
            return Ok(None);
        };
        let access = self.given_kubeconfig(&path, "the admin kubeconfig")?;
        let c = self.cluster(&access, "admin")?;
        self.admin = Some(c.clone());
        Ok(Some(c))
    }

    /// The bootstrap token and where it came from, resolved once per run: a token given this run
    /// (flag, env, file, stdin) wins, then the `--bootstrap-kubeconfig` user, then the state file.
    pub fn token(&mut self) -> Result<Option<(BootstrapToken, TokenOrigin)>> {
        if !self.token_resolved {
            self.token = self.resolve_token()?;
            self.token_resolved = true;
        }
        Ok(self.token.clone())
    }

    /// Where the resolved token came from, if it has been resolved.
    pub fn token_origin(&self) -> Option<&TokenOrigin> {
        self.token.as_ref().map(|(_, o)| o)
    }

    /// Replaces the resolved token (after the token phase generated one).
    pub fn set_token(&mut self, token: BootstrapToken, origin: TokenOrigin) {
        self.token = Some((token, origin));
        self.token_resolved = true;
    }

    fn resolve_token(&mut self) -> Result<Option<(BootstrapToken, TokenOrigin)>> {
        if let Some(src) = self.settings.token_source.clone() {
            let (text, origin) = match src {
                TokenSource::Flag(t) => (t, TokenOrigin::Flag),
                TokenSource::Env(t) => (t, TokenOrigin::Env),
                TokenSource::File(p) => {
                    // Bytes, not text: a binary file is a malformed token, not an I/O error.
                    let bytes =
                        std::fs::read(&p).map_err(|e| Error::io("read the token file", &p, e))?;
                    let t = String::from_utf8_lossy(&bytes).into_owned();
                    (t, TokenOrigin::File(p))
                }
                TokenSource::Stdin => (self.read_stdin()?, TokenOrigin::Stdin),
            };
            let token = BootstrapToken::parse(&text)
                .map_err(|e| e.context(format!("token from {}", origin.describe())))?;
            return Ok(Some((token, origin)));
        }
        if let Some(p) = self.settings.bootstrap_kubeconfig.clone() {
            let access = self.given_kubeconfig(&p, "the bootstrap kubeconfig")?;
            if let Some(t) = access.bootstrap_token() {
                return Ok(Some((
                    t.map_err(|e| e.context("bootstrap kubeconfig"))?,
                    TokenOrigin::BootstrapKubeconfig(p),
                )));
            }
            return Ok(None);
        }
        let path = self.layout.path("token_file").to_string();
        match self.world.read_string(&path)? {
            Some(text) => {
                let t = BootstrapToken::parse(&text).map_err(|e| {
                    Error::conflict(format!("the stored token {path} is damaged ({}); remove it to generate a new token", e.message()))
                })?;
                if self.settings.new_token {
                    self.token_passed_over = Some(format!(
                        "--new-token: the stored token {t} is replaced by a fresh one"
                    ));
                    return Ok(None);
                }
                if let Some(at) = self.stored_token_expiry()
                    && at <= time::OffsetDateTime::now_utc()
                {
                    self.token_passed_over = Some(format!(
                        "the stored token {t} expired at {}: a fresh one will be generated",
                        crate::pki::cert::fmt_unix(at.unix_timestamp())
                    ));
                    return Ok(None);
                }
                Ok(Some((t, TokenOrigin::StateFile)))
            }
            None => Ok(None),
        }
    }

    /// When the stored (generated) token expires, as the token phase recorded it.
    pub fn stored_token_expiry(&self) -> Option<time::OffsetDateTime> {
        let text = self.fact_of("token", "expires_at")?;
        // An unreadable expiry counts as expired, as the token authenticator treats it.
        Some(
            time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
        )
    }

    /// Why a stored token was not used this run (expired, or `--new-token`), if one was there.
    pub fn token_passed_over(&self) -> Option<&str> {
        self.token_passed_over.as_deref()
    }

    fn read_stdin(&mut self) -> Result<String> {
        if let Some(t) = &self.stdin_text {
            return Ok(t.clone());
        }
        let mut text = String::new();
        std::io::stdin()
            .take(4096)
            .read_to_string(&mut text)
            .map_err(|e| {
                Error::io(
                    "read the token from",
                    std::path::Path::new("standard input"),
                    e,
                )
            })?;
        self.stdin_text = Some(text.clone());
        Ok(text)
    }
}
