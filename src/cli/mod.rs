//! The command line: clap definitions and help texts. Flag names follow kubeadm's where kubeadm
//! has one.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

mod cluster_side;

use crate::error::{Error, Result};
use crate::files::LayoutKind;
use crate::settings::{Options, OutputFormat};
pub use cluster_side::{AdminArgs, ApproverArgs, TokenCmd};

/// The top-level examples (short help); the long help adds the exit codes.
pub const TOP_EXAMPLES: &str = "Examples:
  bootlet demo                                   # try the whole flow on a built-in local control plane
  bootlet join 10.0.0.1:6443 --token-file /run/token --discovery-token-ca-cert-hash sha256:<hex>
  bootlet join --dry-run -o json --discovery-file cluster.conf --token-file /run/token
  bootlet plan --bootstrap-kubeconfig bootstrap.conf
  bootlet renew --watch                          # rotate certificates before they expire
  bootlet certs check-expiration
  bootlet token create --print-join-command      # on the control plane
  bootlet approver --leader-elect                # approve kubelet serving CSRs by explicit checks
  bootlet reset                                  # undo what bootlet wrote
See `bootlet help <command>` for more, and --help (long) for exit codes.";

/// The exit-code table of the long help.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  unexpected failure (a bug); rerun with -v and report it
  2  bad flags, config file or phase name
  3  preflight checks failed
  4  malformed input: token, CA pin, kubeconfig, PEM, journal or cluster-info
  5  verification failed: CA pin, JWS signature, TLS or issued certificate
  6  the cluster refused: 401/403/422, CSR denied or failed, conflicting token Secret
  7  discovery or approval timed out
  8  the API server was unreachable or kept failing
  9  state conflict: lock held, journal contradicts the files, foreign files
  10 a phase run alone lacks an input (another phase's output, or credentials it needs)
  11 a file could not be read or written";

/// bootlet joins this machine to a Kubernetes cluster as a graph of small, idempotent, auditable
/// phases.
#[derive(Debug, Parser)]
#[command(name = "bootlet", version, about, after_help = TOP_EXAMPLES)]
pub struct Cli {
    /// More logging on stderr (-v debug, -vv trace). Secrets are never logged.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// The command.
    #[command(subcommand)]
    pub command: Cmd,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run the whole join graph, skipping what is already done.
    #[command(after_help = "Examples:
  # A node with a token and the CA pin its admin handed out:
  BOOTLET_TOKEN=abcdef.0123456789abcdef bootlet join 10.0.0.1:6443 \\
      --discovery-token-ca-cert-hash sha256:3b793efe...dd8a --node-name edge-17
  # One-shot on a lab machine holding the admin kubeconfig:
  bootlet join --admin-kubeconfig /etc/kubernetes/admin.conf
  # Audit: everything the join would write and send, nothing changed:
  bootlet join --dry-run -o json --bootstrap-kubeconfig bootstrap.conf")]
    Join(JoinArgs),
    /// Rotate the node's client and serving certificates when they are due (70-90 % of their lifetime), as the node itself.
    #[command(after_help = "Examples:
  bootlet renew                                  # renews what is past its rotation deadline; else a no-op
  bootlet renew --force                          # renew both now
  bootlet renew --watch                          # keep running (see contrib/systemd/bootlet-renew.service)
  bootlet renew --skip-phases serving-csr --force   # the client certificate only")]
    Renew(RenewArgs),
    /// Remove what bootlet wrote under the root (per its journal), nothing else. Asks first unless --force.
    #[command(after_help = "Examples:
  bootlet reset --dry-run                        # list what would be removed
  bootlet reset --force --root /mnt/image")]
    Reset(ResetArgs),
    /// Manage bootstrap tokens on the cluster (kubeadm's `token`), with an admin kubeconfig.
    Token {
        /// What to do.
        #[command(subcommand)]
        command: TokenCmd,
    },
    /// Approve or deny kubelet-serving CSRs by explicit, named checks (a controller; run it with a kubeconfig allowed to approve them).
    #[command(after_help = "Examples:
  bootlet approver --print-rbac | kubectl apply -f -     # the least RBAC it needs
  bootlet approver --kubeconfig approver.conf --leader-elect --ip-prefixes 10.0.0.0/8
  bootlet approver --once --dry-run -o json              # what it would decide now, for an audit
Checks: signer; requestor system:node:<name>; CN = requestor, O = system:nodes; usages exactly digital signature + server auth (key encipherment for RSA); a DNS or IP SAN and no email/URI SANs; at most --max-dns-names DNS names, each matching --dns-regex and starting with the node name; IPs inside --ip-prefixes; expirationSeconds <= --max-expiration; and, once the Node exists, every SAN among its status.addresses.")]
    Approver(ApproverArgs),
    /// Certificates bootlet manages on this node.
    Certs {
        /// What to do.
        #[command(subcommand)]
        command: CertsCmd,
    },
    /// Run one phase of a workflow (after checking whether it is already done).
    #[command(after_help = "Examples:
  bootlet phase token --root /tmp/admin          # generate and store a token
  bootlet phase secret --root /tmp/admin --admin-kubeconfig admin.conf
  bootlet phase kubeconfig --root /tmp/admin --admin-kubeconfig admin.conf
  bootlet phase client-csr --dry-run --dry-run-dir /tmp/audit
  bootlet phase client-csr --workflow renew --force")]
    Phase {
        /// Phase name (see `bootlet graph`).
        #[arg(value_parser = crate::cli_docs::PhaseName, hide_possible_values = true)]
        name: String,
        /// The workflow the phase belongs to.
        #[arg(long, default_value = "join", value_name = "WORKFLOW")]
        workflow: String,
        /// Renew: rotate now, whatever the deadlines say.
        #[arg(long)]
        force: bool,
        /// Join options.
        #[command(flatten)]
        args: JoinArgs,
    },
    /// Show each phase's status (done, will run, skipped) and why. Changes nothing. `bootlet plan renew` plans the renew workflow.
    #[command(after_help = "Examples:
  bootlet plan --bootstrap-kubeconfig bootstrap.conf
  bootlet plan -o json --root /mnt/image
  bootlet plan renew                             # which certificates are due, and when
  bootlet plan reset                             # what reset would remove")]
    Plan {
        /// The workflow to plan (also accepted as the first argument: `bootlet plan renew`).
        #[arg(long, value_name = "WORKFLOW")]
        workflow: Option<String>,
        /// Renew: plan as if --force were given.
        #[arg(long)]
        force: bool,
        /// Join options.
        #[command(flatten)]
        args: JoinArgs,
    },
    /// Print a workflow's phase graph.
    #[command(after_help = "Examples:
  bootlet graph
  bootlet graph --workflow renew
  bootlet graph --format dot | dot -Tsvg > phases.svg
  bootlet graph --format mermaid")]
    Graph {
        /// Rendering.
        #[arg(long, value_enum, default_value_t = GraphFormat::Text)]
        format: GraphFormat,
        /// The workflow (join, renew, reset), as `plan` takes it [default: join].
        #[arg(value_name = "WORKFLOW", conflicts_with = "workflow_flag")]
        workflow: Option<String>,
        /// The same, as a flag.
        #[arg(long = "workflow", value_name = "WORKFLOW")]
        workflow_flag: Option<String>,
    },
    /// Print the `sha256:` pin of each CA certificate in a PEM file, for --discovery-token-ca-cert-hash.
    #[command(after_help = "Examples:
  bootlet ca-pin /etc/kubernetes/pki/ca.crt")]
    CaPin {
        /// PEM files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Serve a local control plane with the real join rules, for trying and testing bootlet.
    #[command(after_help = "Examples:
  bootlet sandbox --dir /tmp/sb                  # prints the URL; kubectl --kubeconfig /tmp/sb/admin.conf get ns
  bootlet sandbox --dir /tmp/sb --port 6443 --auto-approve-serving
  bootlet sandbox --dir /tmp/sb --signing-duration 2m    # short-lived certificates, to watch renew work
  bootlet sandbox --dir /tmp/sb --fault-rate 0.3 --latency 50-200 --drop-watch-after 3s")]
    #[cfg(feature = "sandbox")]
    Sandbox(SandboxArgs),
    /// Run the whole join flow (admin side, then node side) against an in-process sandbox.
    #[command(after_help = "Examples:
  bootlet demo
  bootlet demo --out /tmp/bootlet-demo --layout krustlet")]
    #[cfg(feature = "sandbox")]
    Demo {
        /// Where to keep the sandbox files and the node's root [default: a new temporary directory].
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Layout of the node's files.
        #[arg(long, value_enum, default_value_t = LayoutArg::Kubelet)]
        layout: LayoutArg,
    },
    /// Print a shell completion script.
    #[command(after_help = "Examples:
  bootlet completions bash > /etc/bash_completion.d/bootlet
  bootlet completions zsh > \"${fpath[1]}/_bootlet\"
  bootlet completions fish > ~/.config/fish/completions/bootlet.fish")]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or write one page per command into a directory.
    #[command(after_help = "Examples:
  bootlet man | man -l -
  bootlet man --out-dir /usr/local/share/man/man1")]
    Man {
        /// Write bootlet.1, bootlet-join.1, ... here instead of printing bootlet.1.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// Print the version (and, with -o json, the formats this build reads and writes).
    #[command(after_help = "Examples:
  bootlet version
  bootlet version -o json")]
    Version {
        /// Output format.
        #[arg(short, long, value_enum)]
        output: Option<OutputArg>,
    },
    /// Write docs/phases.md from the phase manifests (maintainers).
    #[command(hide = true)]
    GenDocs {
        /// Output file.
        #[arg(long, default_value = "docs/phases.md")]
        out: PathBuf,
    },
}

/// `bootlet sandbox` options.
#[derive(Debug, Clone, Args)]
pub struct SandboxArgs {
    /// Directory for admin.conf, ca.crt and ca.key.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Use this CA certificate instead of generating one (with --ca-key).
    #[arg(long, value_name = "FILE", requires = "ca_key")]
    pub ca_cert: Option<PathBuf>,
    /// PKCS#8 key of --ca-cert.
    #[arg(long, value_name = "FILE", requires = "ca_cert")]
    pub ca_key: Option<PathBuf>,
    /// Start without kubeadm's bootstrap bindings and cluster-info.
    #[arg(long)]
    pub bare: bool,
    /// Also auto-approve kubelet serving CSRs (a real cluster never does).
    #[arg(long)]
    pub auto_approve_serving: bool,
    /// Share of requests answered 500 or 429 (with Retry-After), 0 to 1.
    #[arg(long, default_value_t = 0.0, value_name = "F")]
    pub fault_rate: f64,
    /// Added latency per request: MS or MIN-MAX.
    #[arg(long, value_name = "MS")]
    pub latency: Option<String>,
    /// Lifetime of the certificates the signer issues (kube-controller-manager's --cluster-signing-duration); a CSR's expirationSeconds is honoured when shorter (at least 600 s).
    #[arg(long, value_name = "DURATION", default_value = "8760h")]
    pub signing_duration: String,
    /// Drop every watch connection after this long (e.g. 3s).
    #[arg(long, value_name = "DURATION")]
    pub drop_watch_after: Option<String>,
    /// Rewrite cluster-info in answers, as a man in the middle would (for testing discovery).
    #[arg(long, hide = true)]
    pub tamper_cluster_info: bool,
}

/// `bootlet graph` renderings.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GraphFormat {
    /// Numbered list in run order.
    Text,
    /// Graphviz.
    Dot,
    /// Mermaid flowchart.
    Mermaid,
}

/// Options every node-side command shares: where the node's files are and who it is.
#[derive(Debug, Clone, Args, Default)]
pub struct NodeArgs {
    /// TOML file holding any of these options (keys are the flag names); flags win.
    #[arg(long, value_name = "FILE.toml")]
    pub config: Option<PathBuf>,
    /// Prefix under which all files land (paths inside files are as seen from inside it).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// File layout.
    #[arg(long, value_enum)]
    pub layout: Option<LayoutArg>,
    /// Where bootlet keeps its journal and staged files (inside the root).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<String>,
    /// Krustlet data directory (inside the root) [env: KRUSTLET_DATA_DIR, default ~/.krustlet].
    #[arg(long, value_name = "DIR")]
    pub krustlet_data_dir: Option<String>,
    /// Node name [default: the journal's, else the host name].
    #[arg(long)]
    pub node_name: Option<String>,
    /// Output format: kubeadm-style text, or one JSON document on stdout (progress goes to stderr).
    #[arg(short, long, value_enum)]
    pub output: Option<OutputArg>,
}

/// Options of the node-side workflows that talk to the cluster (join, renew).
#[derive(Debug, Clone, Args, Default)]
pub struct ClusterArgs {
    /// Node IP for the serving certificate (repeatable) [default: the address used to reach the API server].
    #[arg(long, value_name = "IP")]
    pub node_ip: Vec<String>,
    /// Bootstrap kubeconfig handed over by an admin (renew: the fallback when the client certificate has expired).
    #[arg(long, value_name = "FILE")]
    pub bootstrap_kubeconfig: Option<PathBuf>,
    /// Write everything into a temporary directory instead of the root; send no mutating request.
    #[arg(long)]
    pub dry_run: bool,
    /// Directory for --dry-run (kept; reuse it to chain single dry-run phases). Implies --dry-run.
    #[arg(long, value_name = "DIR")]
    pub dry_run_dir: Option<PathBuf>,
    /// Keep the temporary directory of a --dry-run (its would-be files, throwaway keys included,
    /// and the report); without it, it is removed at the end.
    #[arg(long)]
    pub keep_dry_run_dir: bool,
    /// Phases not to run (e.g. serving-csr: a node with client credentials only).
    #[arg(long, value_delimiter = ',', value_name = "A,B")]
    pub skip_phases: Vec<String>,
    /// How long to wait for each CSR to be approved and signed [default: 5m].
    #[arg(long, value_name = "DURATION")]
    pub approval_timeout: Option<String>,
    /// Retry budget of each API call against transient failures [default: 60s].
    #[arg(long, value_name = "DURATION")]
    pub api_timeout: Option<String>,
}

/// Options shared by join, phase and plan. Each may also be set in `--config FILE.toml` under the
/// flag's name; flags win.
#[derive(Debug, Clone, Args, Default)]
pub struct JoinArgs {
    /// API server endpoint for token discovery (host:port or https://host:port).
    #[arg(value_name = "API_SERVER_ENDPOINT")]
    pub api_server_endpoint: Option<String>,
    /// Where the node's files are and who it is.
    #[command(flatten)]
    pub node: NodeArgs,
    /// How the node reaches the cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Admin kubeconfig: enables the secret phase and can serve as the discovery source.
    #[arg(long, value_name = "FILE")]
    pub admin_kubeconfig: Option<PathBuf>,
    /// Bootstrap token id.secret, for discovery and TLS bootstrap alike (kubeadm's
    /// --discovery-token and --tls-bootstrap-token are accepted for it). Visible in `ps`: prefer
    /// --token-file or BOOTLET_TOKEN.
    #[arg(
        long,
        conflicts_with = "token_file",
        visible_aliases = ["discovery-token", "tls-bootstrap-token"],
        action = clap::ArgAction::Append,
        value_name = "TOKEN"
    )]
    pub token: Vec<String>,
    /// File holding the bootstrap token; `-` reads standard input [env: BOOTLET_TOKEN holds the token itself].
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Lifetime of the token Secret the secret phase creates (0 = never expires) [default: 24h].
    #[arg(long, value_name = "DURATION")]
    pub token_ttl: Option<String>,
    /// auth-extra-groups of that Secret [default: system:bootstrappers:kubeadm:default-node-token].
    #[arg(long, value_delimiter = ',', value_name = "GROUP,..")]
    pub token_groups: Vec<String>,
    /// Kubeconfig with the cluster's server and CA, for file discovery.
    #[arg(long, value_name = "FILE")]
    pub discovery_file: Option<PathBuf>,
    /// Pin of the cluster CA's public key (repeatable; any match passes).
    #[arg(long, value_name = "sha256:HEX")]
    pub discovery_token_ca_cert_hash: Vec<String>,
    /// Trust the CA in cluster-info without a pin (weakens security: anyone with the token could impersonate the cluster).
    #[arg(long)]
    pub discovery_token_unsafe_skip_ca_verification: bool,
    /// How long token discovery waits for a signed cluster-info [default: 5m].
    #[arg(long, value_name = "DURATION")]
    pub discovery_timeout: Option<String>,
    /// Preflight checks to downgrade to warnings, by name, or `all`.
    #[arg(long, value_delimiter = ',', value_name = "A,B|all")]
    pub ignore_preflight_errors: Vec<String>,
    /// Keep the bootstrap kubeconfig and token file after success.
    #[arg(long)]
    pub keep_bootstrap_kubeconfig: bool,
    /// Generate a fresh bootstrap token even if an earlier run stored one (an expired stored token is never reused).
    #[arg(long)]
    pub new_token: bool,
    /// One-shot join: keep the token Secret this join created (by default it is deleted once the client certificate is issued).
    #[arg(long)]
    pub keep_token: bool,
    /// One-shot join: approve this node's own serving CSR with the admin kubeconfig, after the approver's checks.
    #[arg(long, requires = "admin_kubeconfig")]
    pub approve_serving: bool,
    /// The container runtime's endpoint for the kubelet (written to its flags file), as kubeadm's
    /// --cri-socket [default: unix:///var/run/containerd/containerd.sock].
    #[arg(long, value_name = "ENDPOINT")]
    pub cri_socket: Option<String>,
}

/// `bootlet renew` options.
#[derive(Debug, Clone, Args, Default)]
pub struct RenewArgs {
    /// Where the node's files are and who it is.
    #[command(flatten)]
    pub node: NodeArgs,
    /// How the node reaches the cluster.
    #[command(flatten)]
    pub cluster: ClusterArgs,
    /// Renew now, whatever the rotation deadlines say.
    #[arg(long)]
    pub force: bool,
    /// Keep running: sleep until the earliest rotation deadline, renew, repeat (until SIGTERM/SIGINT).
    #[arg(long, conflicts_with_all = ["force", "dry_run", "dry_run_dir"])]
    pub watch: bool,
}

/// `bootlet reset` options.
#[derive(Debug, Clone, Args, Default)]
pub struct ResetArgs {
    /// Where the node's files are and who it is.
    #[command(flatten)]
    pub node: NodeArgs,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub force: bool,
    /// List what would be removed; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// `bootlet certs` subcommands.
#[derive(Debug, Subcommand)]
pub enum CertsCmd {
    /// For each credential bootlet manages: subject, not-after, residual time, rotation deadline and whether it verifies against the cluster CA. Exits 5 when one has expired.
    #[command(after_help = "Examples:
  bootlet certs check-expiration
  bootlet certs check-expiration -o json --root /mnt/image")]
    CheckExpiration(NodeArgs),
}

/// `--layout`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LayoutArg {
    /// /etc/kubernetes and /var/lib/kubelet/pki.
    Kubelet,
    /// $KRUSTLET_DATA_DIR/config.
    Krustlet,
}

/// `-o`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OutputArg {
    /// Text.
    Text,
    /// JSON.
    Json,
}

impl NodeArgs {
    /// The options these flags set (unset flags stay `None`, so a config file can fill them).
    pub fn to_options(&self) -> Options {
        Options {
            root: self.root.clone(),
            layout: self.layout.map(|l| match l {
                LayoutArg::Kubelet => LayoutKind::Kubelet,
                LayoutArg::Krustlet => LayoutKind::Krustlet,
            }),
            state_dir: self.state_dir.clone(),
            krustlet_data_dir: self.krustlet_data_dir.clone(),
            node_name: self.node_name.clone(),
            output: self.output.map(|o| match o {
                OutputArg::Text => OutputFormat::Text,
                OutputArg::Json => OutputFormat::Json,
            }),
            ..Default::default()
        }
    }
}

fn list(v: &[String]) -> Option<Vec<String>> {
    (!v.is_empty()).then(|| v.to_vec())
}

fn flag(b: bool) -> Option<bool> {
    b.then_some(true)
}

impl ClusterArgs {
    /// Adds the options these flags set to `o`.
    pub fn add_to(&self, o: Options) -> Options {
        Options {
            node_ip: list(&self.node_ip),
            bootstrap_kubeconfig: self.bootstrap_kubeconfig.clone(),
            dry_run: flag(self.dry_run),
            dry_run_dir: self.dry_run_dir.clone(),
            keep_dry_run_dir: flag(self.keep_dry_run_dir),
            skip_phases: list(&self.skip_phases),
            approval_timeout: self.approval_timeout.clone(),
            api_timeout: self.api_timeout.clone(),
            ..o
        }
    }
}

impl JoinArgs {
    /// The one token of `--token` and its kubeadm spellings: kubeadm takes a discovery token and
    /// a TLS bootstrap token apart; bootlet uses one for both, so given twice they must agree.
    fn one_token(&self) -> Result<Option<String>> {
        match self.token.split_first() {
            None => Ok(None),
            Some((first, rest)) if rest.iter().all(|t| t == first) => Ok(Some(first.clone())),
            Some(_) => Err(Error::usage(
                "--token, --discovery-token and --tls-bootstrap-token were given different tokens; bootlet uses one token for discovery and TLS bootstrap alike: give it once",
            )),
        }
    }

    /// The options these flags set (unset flags stay `None`, so a config file can fill them).
    pub fn to_options(&self) -> Result<Options> {
        Ok(Options {
            api_server_endpoint: self.api_server_endpoint.clone(),
            admin_kubeconfig: self.admin_kubeconfig.clone(),
            token: self.one_token()?,
            token_file: self.token_file.clone(),
            token_ttl: self.token_ttl.clone(),
            token_groups: list(&self.token_groups),
            discovery_file: self.discovery_file.clone(),
            discovery_token_ca_cert_hash: list(&self.discovery_token_ca_cert_hash),
            discovery_token_unsafe_skip_ca_verification: flag(
                self.discovery_token_unsafe_skip_ca_verification,
            ),
            discovery_timeout: self.discovery_timeout.clone(),
            ignore_preflight_errors: list(&self.ignore_preflight_errors),
            keep_bootstrap_kubeconfig: flag(self.keep_bootstrap_kubeconfig),
            new_token: flag(self.new_token),
            keep_token: flag(self.keep_token),
            approve_serving: flag(self.approve_serving),
            cri_socket: self.cri_socket.clone(),
            ..self.cluster.add_to(self.node.to_options())
        })
    }
}

impl RenewArgs {
    /// The options these flags set.
    pub fn to_options(&self) -> Options {
        self.cluster.add_to(self.node.to_options())
    }
}

impl ResetArgs {
    /// The options these flags set.
    pub fn to_options(&self) -> Options {
        Options {
            dry_run: flag(self.dry_run),
            ..self.node.to_options()
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::error::ErrorKind;

    #[test]
    fn the_help_lists_every_exit_code_as_the_errors_define_it() {
        for kind in ErrorKind::ALL {
            let line = format!("  {:<2} {}", kind.exit_code(), kind.meaning());
            assert!(
                super::EXIT_CODES.lines().any(|l| l == line),
                "missing from --help: {line:?}"
            );
        }
        let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/errors.md"))
            .unwrap();
        for kind in ErrorKind::ALL {
            assert!(
                docs.contains(&format!(
                    "| {} | {} | {} |",
                    kind.exit_code(),
                    kind.label(),
                    kind.meaning()
                )),
                "docs/errors.md lacks {kind:?}"
            );
        }
    }
}
