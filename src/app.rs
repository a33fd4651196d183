//! The program behind `main`: parse, set up logging, run, print, map errors to exit codes.

use std::ffi::OsString;

use clap::FromArgMatches;

use crate::cli::{CertsCmd, Cli, Cmd, GraphFormat};
use crate::engine::graph::{PhaseGraph, workflow_names};
use crate::engine::{Command, execute_since};
use crate::error::{Error, Result};
use crate::output::Output;
use crate::settings::{Options, OutputFormat, Settings};

/// Runs bootlet with `args` and returns the exit code.
pub fn main_with_args(args: impl IntoIterator<Item = OsString>) -> i32 {
    crate::engine::report::mark_command_start();
    forbid_core_dumps();
    let _ = crate::cluster::crypto_provider().install_default();
    let args: Vec<OsString> = args.into_iter().collect();
    let text_args: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if let Some(code) = crate::cli_docs::help_phase(&text_args) {
        return code;
    }
    let matches = match crate::cli_docs::command().try_get_matches_from(args) {
        Ok(m) => m,
        Err(e) => return print_clap_error(&e),
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => return print_clap_error(&e),
    };
    init_logging(cli.verbose);
    let verbose = cli.verbose;
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            report_error(&e, verbose);
            e.kind().exit_code()
        }
    }
}

/// Prints a command-line error (or help) with any token-shaped value redacted: clap quotes the
/// offending argument, which may be a token typed into the wrong place.
fn print_clap_error(e: &clap::Error) -> i32 {
    let text = crate::secret::redact_tokens(&e.render().to_string());
    if e.use_stderr() {
        crate::output::stderr_write(&text);
        2
    } else {
        crate::output::stdout_write(&text);
        0
    }
}

/// Makes this process impossible to dump: a core file (or a ptrace by another unprivileged
/// process) would hold the token and the private keys bootlet has in memory.
fn forbid_core_dumps() {
    use rustix::process::{Resource, Rlimit, setrlimit};
    let _ = setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    );
    let _ = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
}

/// Prints `error: <one line>` and, with -v, the detail lines.
pub fn report_error(e: &Error, verbose: u8) {
    crate::errln!("error: {}", e.message());
    if verbose > 0 {
        for d in e.details() {
            crate::errln!("  {d}");
        }
        crate::errln!(
            "  (exit code {}: {})",
            e.kind().exit_code(),
            e.kind().meaning()
        );
    }
}

/// Whether stderr may carry colour: a terminal, and `NO_COLOR` unset (no-color.org).
pub fn colour_wanted() -> bool {
    use std::io::IsTerminal;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Logs at `-v` and `-vv` only: at the default verbosity bootlet speaks in its own `[phase]` lines,
/// and the libraries' per-attempt errors stay out of sight.
fn init_logging(verbose: u8) {
    let filter = match verbose {
        0 => "off,bootlet=error",
        1 => "bootlet=debug,kube=info,warn",
        _ => "bootlet=trace,kube=debug,info",
    };
    // A fixed target filter, not `EnvFilter`: the levels are bootlet's own, and `EnvFilter` would
    // bring a regex engine into every binary and compile it at every start (docs/performance.md).
    let Ok(targets) = filter.parse::<tracing_subscriber::filter::Targets>() else {
        return;
    };
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(colour_wanted())
                .with_target(false),
        )
        .with(targets)
        .try_init();
}

/// The async runtime of the commands that serve (the sandbox, the demo's in-process control plane):
/// two workers, so that a slow request does not hold up the others.
#[cfg(feature = "sandbox")]
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::internal(format!("cannot start the async runtime: {e}")))
}

/// The async runtime of a node-side or admin command: one thread. A join waits on one request at
/// a time, so worker threads would only cost their start-up (docs/performance.md).
pub(crate) fn client_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::internal(format!("cannot start the async runtime: {e}")))
}

fn dispatch(cli: Cli) -> Result<i32> {
    match cli.command {
        Cmd::Join(args) => run_engine(
            Command::join(),
            settings_from(args.node.config.as_deref(), args.to_options()?)?,
        ),
        Cmd::Phase {
            name,
            workflow,
            force,
            args,
        } => {
            let mut settings = settings_from(args.node.config.as_deref(), args.to_options()?)?;
            settings.force = force;
            run_engine(Command::Phase { workflow, name }, settings)
        }
        Cmd::Plan {
            workflow,
            force,
            mut args,
        } => {
            // `bootlet plan renew`: the first argument names a workflow when it is one.
            let workflow = match workflow {
                Some(w) => w,
                None => match args.api_server_endpoint.take() {
                    Some(e) if workflow_names().contains(&e) => e,
                    endpoint => {
                        args.api_server_endpoint = endpoint;
                        "join".into()
                    }
                },
            };
            let mut settings = settings_from(args.node.config.as_deref(), args.to_options()?)?;
            settings.force = force;
            run_engine(Command::Plan(workflow), settings)
        }
        Cmd::Renew(args) => {
            let mut settings = settings_from(args.node.config.as_deref(), args.to_options())?;
            settings.force = args.force;
            if args.watch {
                client_runtime()?.block_on(crate::watch::run(settings))?;
                Ok(0)
            } else {
                run_engine(Command::Run("renew".into()), settings)
            }
        }
        Cmd::Reset(args) => {
            let mut settings = settings_from(args.node.config.as_deref(), args.to_options())?;
            settings.force = args.force;
            if !args.force && !args.dry_run {
                confirm_reset(&settings)?;
            }
            run_engine(Command::Run("reset".into()), settings)
        }
        Cmd::Token { command } => client_runtime()?.block_on(token_command(command)),
        Cmd::Approver(args) => approver_command(args),
        Cmd::Certs {
            command: CertsCmd::CheckExpiration(args),
        } => {
            let settings = settings_from(args.config.as_deref(), args.to_options())?;
            crate::expiration::run(&settings)
        }
        Cmd::Graph {
            format,
            workflow,
            workflow_flag,
        } => {
            let workflow = workflow.or(workflow_flag).unwrap_or_else(|| "join".into());
            let g = PhaseGraph::workflow(&workflow)?;
            crate::out!(
                "{}",
                match format {
                    GraphFormat::Text => g.render_text(),
                    GraphFormat::Dot => g.render_dot(),
                    GraphFormat::Mermaid => g.render_mermaid(),
                }
            );
            Ok(0)
        }
        Cmd::CaPin { files } => {
            for f in files {
                let pem = std::fs::read(&f).map_err(|e| Error::io("read", &f, e))?;
                for der in crate::pki::parse_certs_pem(&pem, &f.display().to_string())? {
                    let info = crate::pki::cert::CertInfo::parse(&der)?;
                    // The pin alone on stdout, so that `$(bootlet ca-pin ca.crt)` is the flag's
                    // value; which certificate it is goes to stderr.
                    let pin = crate::pki::pin::Pin::of_spki(&info.spki);
                    crate::outln!("{pin}");
                    eprintln!("{pin}  {} (CN={})", f.display(), info.cn());
                }
            }
            Ok(0)
        }
        #[cfg(feature = "sandbox")]
        Cmd::Sandbox(args) => {
            let options = crate::sandbox::command::options(&args)?;
            runtime()?.block_on(crate::sandbox::command::serve(args, options))?;
            Ok(0)
        }
        #[cfg(feature = "sandbox")]
        Cmd::Demo { out, layout } => {
            let layout = match layout {
                crate::cli::LayoutArg::Kubelet => crate::files::LayoutKind::Kubelet,
                crate::cli::LayoutArg::Krustlet => crate::files::LayoutKind::Krustlet,
            };
            runtime()?.block_on(crate::demo::run(out, layout))?;
            Ok(0)
        }
        Cmd::Completions { shell } => crate::cli_docs::completions(shell),
        Cmd::Man { out_dir } => crate::cli_docs::man(out_dir.as_deref()),
        Cmd::Version { output } => {
            crate::cli_docs::version(matches!(output, Some(crate::cli::OutputArg::Json)))
        }
        Cmd::GenDocs { out } => {
            let text = crate::docs::phases_md(&crate::engine::graph::workflows()?);
            std::fs::write(&out, text).map_err(|e| Error::io("write", &out, e))?;
            Ok(0)
        }
    }
}

/// `bootlet token …`.
async fn token_command(command: crate::cli::TokenCmd) -> Result<i32> {
    use crate::admin::tokens;
    use crate::cli::TokenCmd;
    let budget = std::time::Duration::from_secs(30);
    match command {
        TokenCmd::Generate => {
            crate::outln!(
                "{}",
                crate::token::BootstrapToken::generate()?.expose_full()
            );
            Ok(0)
        }
        TokenCmd::Create {
            token,
            admin,
            ttl,
            usages,
            groups,
            description,
            print_join_command,
            token_file,
        } => {
            let token = match token {
                Some(t) => crate::token::BootstrapToken::parse(&t)?,
                None => crate::token::BootstrapToken::generate()?,
            };
            let spec = tokens::TokenSpec {
                ttl: crate::settings::parse_duration(&ttl, "--ttl")?,
                usages,
                groups,
                description,
            };
            spec.validate()?;
            let (access, cluster) =
                crate::admin::connect(admin.kubeconfig.as_deref(), "admin", budget)?;
            let endpoint = if print_join_command {
                Some(tokens::endpoint_and_pin(&cluster, &access).await?)
            } else {
                None
            };
            tokens::create(&cluster, &token, &spec).await?;
            let shown = match &token_file {
                Some(f) => {
                    crate::files::write_atomic(
                        f,
                        format!("{}\n", token.expose_full()).as_bytes(),
                        crate::files::SECRET_FILE_MODE,
                    )?;
                    crate::errln!("[token] Wrote token {token} to {} (0600)", f.display());
                    format!("--token-file {}", f.display())
                }
                None => String::new(),
            };
            match (endpoint, &token_file) {
                // Never `--token SECRET`: argv is readable by every user of the node (`ps`); the
                // environment variable is not, and the line stays one line to paste.
                (Some((ep, pin)), None) => crate::outln!(
                    "BOOTLET_TOKEN={} bootlet join {ep} --discovery-token-ca-cert-hash {pin}",
                    token.expose_full()
                ),
                (Some((ep, pin)), Some(_)) => {
                    crate::outln!("bootlet join {ep} {shown} --discovery-token-ca-cert-hash {pin}")
                }
                (None, None) => crate::outln!("{}", token.expose_full()),
                (None, Some(_)) => {}
            }
            Ok(0)
        }
        TokenCmd::List { admin, output } => {
            let (_, cluster) = crate::admin::connect(admin.kubeconfig.as_deref(), "admin", budget)?;
            let (rows, problems) = tokens::list(&cluster).await?;
            for p in problems {
                crate::errln!("[token] WARNING: {p}");
            }
            if matches!(output, Some(crate::cli::OutputArg::Json)) {
                crate::outln!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({"tokens": rows}))
                        .unwrap_or_default()
                );
            } else {
                crate::out!("{}", tokens::table(&rows));
            }
            Ok(0)
        }
        TokenCmd::Delete { ids, admin } => {
            let ids = ids
                .iter()
                .map(|i| tokens::id_of(i))
                .collect::<Result<Vec<_>>>()?;
            let (_, cluster) = crate::admin::connect(admin.kubeconfig.as_deref(), "admin", budget)?;
            tokens::delete(&cluster, &ids).await?;
            for id in &ids {
                crate::outln!("bootstrap token {id:?} deleted");
            }
            Ok(0)
        }
    }
}

/// `bootlet approver`.
fn approver_command(args: crate::cli::ApproverArgs) -> Result<i32> {
    use crate::admin::approver::{self, policy};
    if args.print_rbac {
        let (ns, name) = args.service_account.split_once(':').ok_or_else(|| {
            Error::usage(
                "--service-account takes NAMESPACE:NAME, e.g. kube-system:bootlet-approver",
            )
        })?;
        crate::out!("{}", approver::rbac::manifests(ns, name, &args.lease_name));
        return Ok(0);
    }
    let mut p = policy::Policy {
        max_dns_names: args.max_dns_names,
        max_expiration: crate::settings::parse_duration(&args.max_expiration, "--max-expiration")?,
        require_node: args.require_node,
        ..Default::default()
    };
    if let Some(re) = &args.dns_regex {
        p.dns_regex = Some(regex::Regex::new(re).map_err(|e| {
            Error::usage(format!(
                "--dns-regex {re:?} is not a regular expression: {e}"
            ))
        })?);
    }
    if !args.ip_prefixes.is_empty() {
        p.ip_prefixes = args
            .ip_prefixes
            .iter()
            .map(|s| policy::IpPrefix::parse(s))
            .collect::<Result<Vec<_>>>()?;
    }
    let identity = args.identity.clone().unwrap_or_else(|| {
        format!(
            "{}_{}",
            crate::settings::default_node_name(),
            &crate::token::BootstrapToken::generate()
                .map(|t| t.id().to_string())
                .unwrap_or_default()
        )
    });
    let opts = approver::Options {
        policy: p,
        once: args.once,
        dry_run: args.dry_run,
        json: matches!(args.output, Some(crate::cli::OutputArg::Json)),
        leader_election: args.leader_elect.then(|| {
            (
                args.lease_namespace.clone(),
                args.lease_name.clone(),
                identity,
            )
        }),
        recheck: std::time::Duration::from_secs(5),
    };
    client_runtime()?.block_on(async {
        let (_, cluster) = crate::admin::connect(
            args.admin.kubeconfig.as_deref(),
            "approver",
            std::time::Duration::from_secs(60),
        )?;
        approver::run(cluster, opts).await
    })?;
    Ok(0)
}

/// kubeadm's question before a reset; anything but yes leaves everything in place.
fn confirm_reset(settings: &Settings) -> Result<()> {
    use std::io::{BufRead, Write};
    crate::err!(
        "[reset] WARNING: bootlet will remove the files it wrote under {} (its journal lists them; `bootlet reset --dry-run` shows them).\n[reset] Are you sure you want to proceed? [y/N]: ",
        settings.root.display()
    );
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        return Ok(());
    }
    Err(Error::usage(
        "reset was not confirmed; nothing was removed. Answer y, or pass --force",
    ))
}

/// Resolves settings from a config file and the flags' options (flags win).
pub fn settings_from(config: Option<&std::path::Path>, flags: Options) -> Result<Settings> {
    let file = match config {
        Some(p) => Options::from_file(p)?,
        None => Options::default(),
    };
    let env_token = std::env::var("BOOTLET_TOKEN").ok();
    Settings::resolve(file.overlaid_by(flags), env_token)
}

fn run_engine(command: Command, settings: Settings) -> Result<i32> {
    let json = settings.output == OutputFormat::Json;
    let dry_run = settings.dry_run;
    let throwaway_dry_dir = settings.dry_run_dir.is_none() && !settings.keep_dry_run_dir;
    let out = Output::new(json);
    let interrupted = format!(
        "[bootlet] Interrupted: stopped `bootlet {}` (every file bootlet writes is replaced whole, so nothing is half-written); rerun the same command to resume where it stopped",
        command.label()
    );
    let started = crate::engine::report::command_start().unwrap_or_else(std::time::Instant::now);
    let Some(outcome) = client_runtime()?.block_on(async {
        tokio::select! {
            outcome = execute_since(command.clone(), settings, out, started) => Some(outcome),
            _ = tokio::signal::ctrl_c() => None,
        }
    }) else {
        crate::errln!("{interrupted}");
        return Ok(130);
    };
    if json {
        crate::outln!("{}", outcome.report.to_json());
    } else if dry_run && !command.is_plan() {
        crate::out!("{}", outcome.report.render_text());
    }
    if let Some(dir) = &outcome.report.dry_run_dir {
        if throwaway_dry_dir {
            // Its would-be files hold throwaway keys: a temporary directory does not outlive the
            // run unless asked (--keep-dry-run-dir, or --dry-run-dir DIR).
            std::fs::remove_dir_all(dir).map_err(|e| {
                Error::io("remove the dry-run directory", std::path::Path::new(dir), e)
            })?;
            if !json {
                crate::outln!(
                    "[dryrun] Removed {dir} and its throwaway keys; keep the would-be files and the report with --dry-run-dir DIR or --keep-dry-run-dir"
                );
            }
        } else {
            let report_path = std::path::Path::new(dir).join("bootlet-report.json");
            crate::files::write_atomic(
                &report_path,
                outcome.report.to_json().as_bytes(),
                crate::files::PUBLIC_FILE_MODE,
            )?;
            if !json {
                crate::outln!("[dryrun] The audit report is in {}", report_path.display());
            }
        }
    }
    match outcome.error {
        Some(e) => Err(e),
        None => Ok(0),
    }
}
