//! The cluster-side commands' flags: `bootlet token …` and `bootlet approver`, which act with an
//! admin (or approver) kubeconfig rather than on a node's root.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::OutputArg;

/// Where the admin kubeconfig is.
#[derive(Debug, Clone, Args, Default)]
pub struct AdminArgs {
    /// Admin kubeconfig [default: $KUBECONFIG, else /etc/kubernetes/admin.conf].
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
}

/// `bootlet token` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create a bootstrap token and its Secret; print the token (or, with --print-join-command, the join command).
    #[command(after_help = "Examples:
  bootlet token create --print-join-command
  bootlet token create --ttl 2h --description \"edge batch 7\" --token-file /run/join-token
  bootlet token create abcdef.0123456789abcdef --usages authentication")]
    Create {
        /// The token to create [default: a new random one]. On argv it is visible in `ps`.
        token: Option<String>,
        /// Admin credentials.
        #[command(flatten)]
        admin: AdminArgs,
        /// Lifetime (0 = never expires).
        #[arg(long, default_value = "24h", value_name = "DURATION")]
        ttl: String,
        /// Usages: signing (cluster-info JWS), authentication (bootstrap credentials).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "signing,authentication",
            value_name = "USAGE,.."
        )]
        usages: Vec<String>,
        /// auth-extra-groups.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "system:bootstrappers:kubeadm:default-node-token",
            value_name = "GROUP,.."
        )]
        groups: Vec<String>,
        /// Human description.
        #[arg(long, default_value = "")]
        description: String,
        /// Print the whole `bootlet join` command (endpoint and CA pin from cluster-info).
        #[arg(long)]
        print_join_command: bool,
        /// Write the token to this file (0600) instead of printing it.
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
    },
    /// List bootstrap tokens (secret halves redacted), with their expiry.
    #[command(after_help = "Examples:
  bootlet token list
  bootlet token list -o json")]
    List {
        /// Admin credentials.
        #[command(flatten)]
        admin: AdminArgs,
        /// Output format.
        #[arg(short, long, value_enum)]
        output: Option<OutputArg>,
    },
    /// Delete bootstrap tokens by id or whole token.
    #[command(after_help = "Examples:
  bootlet token delete abcdef")]
    Delete {
        /// Token ids (or tokens).
        #[arg(required = true, value_name = "ID|TOKEN")]
        ids: Vec<String>,
        /// Admin credentials.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Print a new random token (creates nothing).
    Generate,
}

/// `bootlet approver` options.
#[derive(Debug, Clone, Args)]
pub struct ApproverArgs {
    /// Kubeconfig allowed to approve kubelet-serving CSRs.
    #[command(flatten)]
    pub admin: AdminArgs,
    /// Decide what is pending, then exit (for cron and CI).
    #[arg(long)]
    pub once: bool,
    /// Log the decisions; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// `json`: one JSON line per decision, for audit.
    #[arg(short, long, value_enum)]
    pub output: Option<OutputArg>,
    /// Act only while holding a coordination.k8s.io/v1 Lease (run several replicas safely).
    #[arg(long)]
    pub leader_elect: bool,
    /// Namespace of the Lease.
    #[arg(long, default_value = "kube-system", value_name = "NS")]
    pub lease_namespace: String,
    /// Name of the Lease.
    #[arg(long, default_value = "bootlet-approver", value_name = "NAME")]
    pub lease_name: String,
    /// This replica's identity in the Lease [default: host name and a random suffix].
    #[arg(long, value_name = "ID")]
    pub identity: Option<String>,
    /// At most this many DNS SANs.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub max_dns_names: usize,
    /// DNS SANs other than the node's own name must match this regex and start with `<node>.`
    /// [default: none; the node's name is the only DNS SAN approved].
    #[arg(long, value_name = "REGEX")]
    pub dns_regex: Option<String>,
    /// Every IP SAN must lie in one of these prefixes [default: any, but loopback, link-local,
    /// multicast and unspecified addresses only when a prefix here names them, e.g. 127.0.0.0/8].
    #[arg(long, value_delimiter = ',', value_name = "CIDR,..")]
    pub ip_prefixes: Vec<String>,
    /// The longest expirationSeconds a CSR may request.
    #[arg(long, default_value = "8808h", value_name = "DURATION")]
    pub max_expiration: String,
    /// Deny a CSR whose Node does not exist (default: leave it pending until the Node registers).
    #[arg(long)]
    pub require_node: bool,
    /// Print the RBAC the approver needs (ServiceAccount, ClusterRole and binding, the Lease Role) and exit.
    #[arg(long)]
    pub print_rbac: bool,
    /// The service account of --print-rbac, NAMESPACE:NAME.
    #[arg(
        long,
        default_value = "kube-system:bootlet-approver",
        value_name = "NS:NAME"
    )]
    pub service_account: String,
}
