//! Settings: the same options from `--config FILE.toml` and from flags, flags winning, then
//! defaults. Every option is optional at both layers so "given" and "defaulted" stay distinct.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::files::LayoutKind;
use crate::pki::pin::Pin;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// kubeadm-style lines.
    #[default]
    Text,
    /// One JSON document on stdout; progress lines go to stderr.
    Json,
}

impl std::str::FromStr for OutputFormat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "text" => Ok(OutputFormat::Text),
            "json" => Ok(OutputFormat::Json),
            o => Err(Error::usage(format!(
                "unknown output format {o:?}; use text or json"
            ))),
        }
    }
}

/// The layer of options a config file or the flags may set. Keys in the file are the flag names.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Options {
    /// API server endpoint for token discovery.
    pub api_server_endpoint: Option<String>,
    /// Root prefix.
    pub root: Option<PathBuf>,
    /// Layout.
    pub layout: Option<LayoutKind>,
    /// State directory (inside the root).
    pub state_dir: Option<String>,
    /// Krustlet data dir (inside the root).
    pub krustlet_data_dir: Option<String>,
    /// Node name.
    pub node_name: Option<String>,
    /// Node IPs for the serving certificate.
    pub node_ip: Option<Vec<String>>,
    /// Admin kubeconfig.
    pub admin_kubeconfig: Option<PathBuf>,
    /// Token value (discouraged in files and on argv; use token-file).
    pub token: Option<String>,
    /// File holding the token, `-` for stdin.
    pub token_file: Option<PathBuf>,
    /// Lifetime of a token Secret the secret phase creates.
    pub token_ttl: Option<String>,
    /// `auth-extra-groups` of the token Secret.
    pub token_groups: Option<Vec<String>>,
    /// Bootstrap kubeconfig to use.
    pub bootstrap_kubeconfig: Option<PathBuf>,
    /// Discovery kubeconfig file.
    pub discovery_file: Option<PathBuf>,
    /// CA pins.
    pub discovery_token_ca_cert_hash: Option<Vec<String>>,
    /// Skip the CA pin.
    pub discovery_token_unsafe_skip_ca_verification: Option<bool>,
    /// Discovery timeout.
    pub discovery_timeout: Option<String>,
    /// Dry-run.
    pub dry_run: Option<bool>,
    /// Dry-run directory.
    pub dry_run_dir: Option<PathBuf>,
    /// Keep a temporary dry-run directory.
    pub keep_dry_run_dir: Option<bool>,
    /// Phases to skip.
    pub skip_phases: Option<Vec<String>>,
    /// Preflight checks to ignore.
    pub ignore_preflight_errors: Option<Vec<String>>,
    /// Approval timeout.
    pub approval_timeout: Option<String>,
    /// Per-API-call retry budget.
    pub api_timeout: Option<String>,
    /// Keep the bootstrap kubeconfig after success.
    pub keep_bootstrap_kubeconfig: Option<bool>,
    /// Generate a fresh token even when an earlier run stored one.
    pub new_token: Option<bool>,
    /// Keep the token Secret a one-shot join created.
    pub keep_token: Option<bool>,
    /// Approve this node's serving CSR with the admin kubeconfig.
    pub approve_serving: Option<bool>,
    /// The container runtime endpoint.
    pub cri_socket: Option<String>,
    /// Output format.
    pub output: Option<OutputFormat>,
}

macro_rules! overlay {
    ($base:ident, $top:ident; $($f:ident),* $(,)?) => {
        $( if $top.$f.is_some() { $base.$f = $top.$f; } )*
    };
}

impl Options {
    /// Reads a config file. Unknown keys are errors that name the key.
    pub fn from_file(path: &Path) -> Result<Options> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io("read config file", path, e).context("--config"))?;
        toml::from_str(&text).map_err(|e| {
            // Name the line and its key, never its value (it may be a token).
            let line = e
                .span()
                .map(|s| {
                    let n = text[..s.start].matches('\n').count();
                    let key = text.lines().nth(n).and_then(|l| l.split_once('=')).map(|(k, _)| k.trim()).unwrap_or_default();
                    if key.is_empty() { format!(" (line {})", n + 1) } else { format!(" (line {}, key {key})", n + 1) }
                })
                .unwrap_or_default();
            Error::usage(format!(
                "config file {} is invalid{line}: {}; keys are the flag names, e.g. node-name = \"edge-1\"",
                path.display(),
                e.message().trim()
            ))
        })
    }

    /// `self` with every option `top` sets replacing ours (flags over file).
    pub fn overlaid_by(mut self, top: Options) -> Options {
        overlay!(self, top; api_server_endpoint, root, layout, state_dir, krustlet_data_dir, node_name,
            node_ip, admin_kubeconfig, token, token_file, token_ttl, token_groups, bootstrap_kubeconfig,
            discovery_file, discovery_token_ca_cert_hash, discovery_token_unsafe_skip_ca_verification,
            discovery_timeout, dry_run, dry_run_dir, keep_dry_run_dir, skip_phases, ignore_preflight_errors,
            approval_timeout, api_timeout, keep_bootstrap_kubeconfig, new_token, keep_token,
            approve_serving, cri_socket, output);
        self
    }
}

/// Where the token came from (the value itself is resolved by the token phase).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `--token` on argv (visible in `ps`) or in the config file.
    Flag(String),
    /// `BOOTLET_TOKEN`.
    Env(String),
    /// `--token-file FILE`.
    File(PathBuf),
    /// `--token-file -`.
    Stdin,
}

/// Resolved settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// API server endpoint URL for token discovery.
    pub endpoint: Option<String>,
    /// Root prefix.
    pub root: PathBuf,
    /// Layout.
    pub layout: LayoutKind,
    /// State directory override.
    pub state_dir: Option<String>,
    /// Krustlet data dir.
    pub krustlet_data_dir: String,
    /// Node name.
    pub node_name: String,
    /// Whether the node name was given (flag or config) rather than defaulted to the host name;
    /// a run without one takes the journal's.
    pub node_name_given: bool,
    /// Whether `--layout` (or the config file) named the layout; if not, a journal's decides.
    pub layout_given: bool,
    /// Whether the Krustlet data directory was named (flag, config or `KRUSTLET_DATA_DIR`).
    pub krustlet_data_dir_given: bool,
    /// `--force` (renew: rotate now; reset: no confirmation).
    pub force: bool,
    /// Node IPs given (detected later when empty).
    pub node_ips: Vec<IpAddr>,
    /// Admin kubeconfig.
    pub admin_kubeconfig: Option<PathBuf>,
    /// Token source given.
    pub token_source: Option<TokenSource>,
    /// Token TTL (zero: never expires).
    pub token_ttl: Duration,
    /// Token groups.
    pub token_groups: Vec<String>,
    /// Bootstrap kubeconfig given.
    pub bootstrap_kubeconfig: Option<PathBuf>,
    /// Discovery file.
    pub discovery_file: Option<PathBuf>,
    /// Pins.
    pub ca_pins: Vec<Pin>,
    /// Unsafe skip of the pin.
    pub unsafe_skip_ca_verification: bool,
    /// Discovery timeout.
    pub discovery_timeout: Duration,
    /// Dry-run.
    pub dry_run: bool,
    /// Dry-run directory.
    pub dry_run_dir: Option<PathBuf>,
    /// Keep the temporary dry-run directory (else it is removed at the end of the run).
    pub keep_dry_run_dir: bool,
    /// Phases skipped.
    pub skip_phases: Vec<String>,
    /// Preflight checks ignored (lower-case; `all`).
    pub ignore_preflight_errors: Vec<String>,
    /// Approval timeout.
    pub approval_timeout: Duration,
    /// Per-call API retry budget.
    pub api_timeout: Duration,
    /// Keep the bootstrap kubeconfig.
    pub keep_bootstrap_kubeconfig: bool,
    /// Generate a fresh token, ignoring a stored one.
    pub new_token: bool,
    /// Keep the token Secret a one-shot join created.
    pub keep_token: bool,
    /// Approve this node's serving CSR with the admin kubeconfig (the approver's checks).
    pub approve_serving: bool,
    /// The kubelet's container runtime endpoint (`unix:///…`).
    pub cri_socket: String,
    /// Output format.
    pub output: OutputFormat,
}

/// kubeadm's default container runtime endpoint (containerd's socket).
pub const DEFAULT_CRI_SOCKET: &str = "unix:///var/run/containerd/containerd.sock";

/// `--cri-socket`: a `unix://` URL, or an absolute socket path (made one), as kubeadm takes it.
fn cri_endpoint(given: Option<&str>) -> Result<String> {
    let Some(text) = given.map(str::trim) else {
        return Ok(DEFAULT_CRI_SOCKET.to_string());
    };
    let path = text.strip_prefix("unix://").unwrap_or(text);
    if !path.starts_with('/') || path.contains(char::is_whitespace) || path.contains('"') {
        return Err(Error::usage(format!(
            "--cri-socket {text:?} is not a unix socket endpoint; give one like {DEFAULT_CRI_SOCKET} or /run/containerd/containerd.sock"
        )));
    }
    Ok(format!("unix://{path}"))
}

/// Go's longest `time.Duration` (2^63-1 ns): what kubeadm, the kubelet and the API server take,
/// and far enough from the calendar's end that any time plus it is a valid date.
pub const MAX_DURATION: Duration = Duration::new(9_223_372_036, 854_775_807);

/// Parses `90`, `500ms`, `30s`, `5m`, `2h` and combinations like `1h30m`, up to [`MAX_DURATION`].
pub fn parse_duration(text: &str, what: &str) -> Result<Duration> {
    let bad = || {
        Error::usage(format!(
            "{what}: {text:?} is not a duration; use e.g. 30s, 5m, 1h30m, 500ms"
        ))
    };
    let t = text.trim();
    if t.is_empty() {
        return Err(bad());
    }
    let too_long = || {
        Error::usage(format!(
            "{what}: {text:?} is longer than the longest duration Kubernetes takes, 2562047h (about 292 years, Go's time.Duration); use a shorter one"
        ))
    };
    let checked = |d: Option<Duration>| d.filter(|d| *d <= MAX_DURATION).ok_or_else(too_long);
    if let Ok(secs) = t.parse::<u64>() {
        return checked(Some(Duration::from_secs(secs)));
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| too_long())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let part = match unit {
            "ms" => Some(Duration::from_millis(n)),
            "s" => Some(Duration::from_secs(n)),
            "m" => n.checked_mul(60).map(Duration::from_secs),
            "h" => n.checked_mul(3600).map(Duration::from_secs),
            _ => return Err(bad()),
        };
        total = checked(part.and_then(|p| total.checked_add(p)))?;
    }
    Ok(total)
}

/// The machine's host name, lower-cased, as the default node name (the kubelet's default).
pub fn default_node_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_ascii_lowercase())
        .unwrap_or_else(|_| "localhost".into())
}

fn split_list(items: Vec<String>) -> Vec<String> {
    items
        .iter()
        .flat_map(|s| s.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Refuses a token-shaped value in any option but `token`: a token typed into the endpoint slot
/// (or any other) would otherwise be resolved by DNS, written into files or echoed in errors.
fn refuse_misplaced_tokens(o: &Options) -> Result<()> {
    let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.to_string_lossy().into_owned());
    let list = |v: &Option<Vec<String>>| v.as_ref().map(|v| v.join(","));
    let fields: [(&str, Option<String>); 19] = [
        ("API_SERVER_ENDPOINT", o.api_server_endpoint.clone()),
        ("--root", path(&o.root)),
        ("--state-dir", o.state_dir.clone()),
        ("--krustlet-data-dir", o.krustlet_data_dir.clone()),
        ("--node-name", o.node_name.clone()),
        ("--node-ip", list(&o.node_ip)),
        ("--admin-kubeconfig", path(&o.admin_kubeconfig)),
        ("--token-file", path(&o.token_file)),
        ("--token-ttl", o.token_ttl.clone()),
        ("--token-groups", list(&o.token_groups)),
        ("--bootstrap-kubeconfig", path(&o.bootstrap_kubeconfig)),
        ("--discovery-file", path(&o.discovery_file)),
        (
            "--discovery-token-ca-cert-hash",
            list(&o.discovery_token_ca_cert_hash),
        ),
        ("--discovery-timeout", o.discovery_timeout.clone()),
        ("--dry-run-dir", path(&o.dry_run_dir)),
        ("--skip-phases", list(&o.skip_phases)),
        (
            "--ignore-preflight-errors",
            list(&o.ignore_preflight_errors),
        ),
        ("--approval-timeout", o.approval_timeout.clone()),
        ("--api-timeout", o.api_timeout.clone()),
    ];
    for (flag, value) in fields {
        if value.is_some_and(|v| crate::secret::contains_token(&v)) {
            return Err(Error::usage(format!(
                "{flag} holds something shaped like a bootstrap token; nothing was sent anywhere. Give a token only with --token-file FILE, --token-file - (stdin) or BOOTLET_TOKEN"
            )));
        }
    }
    Ok(())
}

impl Settings {
    /// The file layout these settings name (layout kind, root, Krustlet data and state dirs). Run
    /// as root, bootlet keeps its state in `/var/lib/bootlet` for every layout, where later
    /// commands look first; a non-root Krustlet node keeps it in the data directory.
    pub fn file_layout(&self) -> Result<crate::files::Layout> {
        let root_user = rustix::process::geteuid().is_root();
        let state_dir = match (&self.state_dir, self.layout) {
            (None, crate::files::LayoutKind::Krustlet) if root_user => Some("/var/lib/bootlet"),
            (dir, _) => dir.as_deref(),
        };
        crate::files::Layout::new(
            self.layout,
            self.root.clone(),
            &self.krustlet_data_dir,
            state_dir,
        )
    }

    /// Resolves options into settings. `env_token` is `BOOTLET_TOKEN` (passed in so tests need not
    /// touch the process environment).
    pub fn resolve(o: Options, env_token: Option<String>) -> Result<Settings> {
        refuse_misplaced_tokens(&o)?;
        let endpoint = o
            .api_server_endpoint
            .as_deref()
            .map(crate::kubeconfig::endpoint_url)
            .transpose()?;
        let node_ips = split_list(o.node_ip.unwrap_or_default())
            .iter()
            .map(|s| {
                s.parse::<IpAddr>()
                    .map_err(|_| Error::usage(format!("--node-ip {s:?} is not an IP address")))
            })
            .collect::<Result<Vec<_>>>()?;
        let token_source = match (o.token, o.token_file, env_token.filter(|t| !t.is_empty())) {
            (Some(_), Some(_), _) => {
                return Err(Error::usage(
                    "--token and --token-file are mutually exclusive; give one",
                ));
            }
            (Some(t), None, _) => Some(TokenSource::Flag(t)),
            (None, Some(f), _) if f.as_os_str() == "-" => Some(TokenSource::Stdin),
            (None, Some(f), _) => Some(TokenSource::File(f)),
            (None, None, Some(t)) => Some(TokenSource::Env(t)),
            (None, None, None) => None,
        };
        let new_token = o.new_token.unwrap_or(false);
        if new_token && (token_source.is_some() || o.bootstrap_kubeconfig.is_some()) {
            return Err(Error::usage(
                "--new-token generates a token; it cannot be combined with a given token (--token, --token-file, BOOTLET_TOKEN) or --bootstrap-kubeconfig",
            ));
        }
        let ca_pins = split_list(o.discovery_token_ca_cert_hash.unwrap_or_default())
            .iter()
            .map(|p| Pin::parse(p))
            .collect::<Result<Vec<_>>>()?;
        let token_groups = match o.token_groups {
            Some(g) => split_list(g),
            None => vec![crate::token::DEFAULT_NODE_TOKEN_GROUP.to_string()],
        };
        for g in &token_groups {
            if !crate::token::valid_extra_group(g) {
                return Err(Error::usage(format!(
                    "--token-groups {g:?} is not a valid bootstrap group; it must match system:bootstrappers:[a-z0-9:-]{{0,255}}[a-z0-9]"
                )));
            }
        }
        let skip_phases = split_list(o.skip_phases.unwrap_or_default());
        let ignore_preflight_errors = split_list(o.ignore_preflight_errors.unwrap_or_default())
            .into_iter()
            .map(|s| s.to_ascii_lowercase())
            .collect();
        let dur = |v: Option<String>, default: &str, what: &str| {
            parse_duration(v.as_deref().unwrap_or(default), what)
        };
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        let krustlet_data_dir_given =
            o.krustlet_data_dir.is_some() || std::env::var_os("KRUSTLET_DATA_DIR").is_some();
        let krustlet_data_dir = o
            .krustlet_data_dir
            .or_else(|| std::env::var("KRUSTLET_DATA_DIR").ok())
            .unwrap_or_else(|| format!("{home}/.krustlet"));
        let root = o.root.unwrap_or_else(|| PathBuf::from("/"));
        let root = if root.is_absolute() {
            root
        } else {
            std::env::current_dir()
                .map_err(|e| Error::io("resolve", &root, e))?
                .join(root)
        };
        Ok(Settings {
            endpoint,
            root,
            layout_given: o.layout.is_some(),
            layout: o.layout.unwrap_or_default(),
            state_dir: o.state_dir,
            krustlet_data_dir_given,
            krustlet_data_dir,
            node_name_given: o.node_name.is_some(),
            node_name: o.node_name.unwrap_or_else(default_node_name),
            force: false,
            node_ips,
            admin_kubeconfig: o.admin_kubeconfig,
            token_source,
            token_ttl: dur(o.token_ttl, "24h", "--token-ttl")?,
            token_groups,
            bootstrap_kubeconfig: o.bootstrap_kubeconfig,
            discovery_file: o.discovery_file,
            ca_pins,
            unsafe_skip_ca_verification: o
                .discovery_token_unsafe_skip_ca_verification
                .unwrap_or(false),
            discovery_timeout: dur(o.discovery_timeout, "5m", "--discovery-timeout")?,
            dry_run: o.dry_run.unwrap_or(false) || o.dry_run_dir.is_some(),
            dry_run_dir: o.dry_run_dir,
            keep_dry_run_dir: o.keep_dry_run_dir.unwrap_or(false),
            skip_phases,
            ignore_preflight_errors,
            approval_timeout: dur(o.approval_timeout, "5m", "--approval-timeout")?,
            api_timeout: dur(o.api_timeout, "60s", "--api-timeout")?,
            keep_bootstrap_kubeconfig: o.keep_bootstrap_kubeconfig.unwrap_or(false),
            new_token,
            keep_token: o.keep_token.unwrap_or(false),
            approve_serving: o.approve_serving.unwrap_or(false),
            cri_socket: cri_endpoint(o.cri_socket.as_deref())?,
            output: o.output.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90", "x").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_duration("1h30m", "x").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            parse_duration("250ms", "x").unwrap(),
            Duration::from_millis(250)
        );
        for bad in ["", "m", "5d", "1.5h", "-1s"] {
            assert!(parse_duration(bad, "x").is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_win_over_file() {
        let file: Options =
            toml::from_str("node-name = \"from-file\"\nlayout = \"krustlet\"\n").unwrap();
        let flags = Options {
            node_name: Some("from-flag".into()),
            ..Default::default()
        };
        let s = Settings::resolve(file.overlaid_by(flags), None).unwrap();
        assert_eq!(s.node_name, "from-flag");
        assert_eq!(s.layout, LayoutKind::Krustlet);
    }

    #[test]
    fn tokens_in_other_flags_are_refused_without_echo() {
        let t = "abcdef.0123456789abcdef".to_string();
        for o in [
            Options {
                api_server_endpoint: Some(t.clone()),
                ..Default::default()
            },
            Options {
                node_name: Some(t.clone()),
                ..Default::default()
            },
            Options {
                discovery_token_ca_cert_hash: Some(vec![t.clone()]),
                ..Default::default()
            },
            Options {
                token_file: Some(PathBuf::from(format!("/run/{t}"))),
                ..Default::default()
            },
        ] {
            let e = Settings::resolve(o, None).unwrap_err();
            assert!(e.message().contains("shaped like a bootstrap token"), "{e}");
            assert!(!e.message().contains("0123456789abcdef"), "{e}");
        }
        let fine = Options {
            token: Some(t),
            ..Default::default()
        };
        Settings::resolve(fine, None).unwrap();
    }

    #[test]
    fn unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "node-nme = \"x\"\n").unwrap();
        let e = Options::from_file(&p).unwrap_err();
        assert!(e.message().contains("node-nme"), "{e}");
        assert!(e.message().contains("line 1"), "{e}");
    }
}
