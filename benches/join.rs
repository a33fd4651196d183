//! bootlet's benchmarks: `cargo bench --bench join` (all), or name some: `cargo bench --bench join
//! -- node storm`. Figures and the machine they ran on are in docs/performance.md.
//!
//! - `whole`: one-shot joins (admin and node side) against an in-process sandbox with instant
//!   approval, median and p99;
//! - `node`: node-side joins (bootstrap kubeconfig) against the same, median and p99, with the
//!   request count per join;
//! - `renew`: forced renewals (client and serving, as the node) of one joined node, median and
//!   p99, with the request count per renewal;
//! - `crowded`: node-side joins against a sandbox holding 4,000 CSRs, against a fresh one, and the
//!   idle CPU of each (the controllers are event-driven: stored objects cost nothing at rest);
//! - `storm`: N nodes (distinct names and keys) joining one sandbox concurrently from one process;
//! - `dryrun`: an offline `--dry-run` of the whole flow;
//! - `profile`: where a node-side join's time goes, phase by phase, and its syncs;
//! - `floor`: the physical floor of a node-side join measured in the same run (two key generations,
//!   two TLS handshakes with a first request, two more requests, six atomic 1 KiB writes) and
//!   bootlet's ratio to it, in-process and as a process (and a token-discovery join as a process);
//! - `startup`: what a run costs before and around its phases (settings, lock, graph, plan): a
//!   `join` of a node that is already joined, in-process and as a process, next to `--version`;
//! - `binary`: the release binary's size and one `join`'s peak RSS (runs target/release/bootlet);
//! - `real` (only when named: it needs Go and builds the reference Kubernetes): bootlet against the
//!   real control plane, side by side with the kubelet's own TLS bootstrap (`join/real.rs`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bootlet::engine::{Command, execute};
use bootlet::output::Output;
use bootlet::sandbox::{Sandbox, SandboxOptions};
use bootlet::settings::{Options, Settings};

#[path = "join/real.rs"]
mod real;

/// A directory for node roots: under `BOOTLET_BENCH_DIR` when set (e.g. /dev/shm, to take the
/// disk's fsync latency out of the figures), else the system temp dir.
fn scratch() -> tempfile::TempDir {
    match std::env::var_os("BOOTLET_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn report(name: &str, mut times: Vec<Duration>) {
    times.sort();
    println!(
        "{name:<28} n={:<5} median {:>8.2} ms   p99 {:>8.2} ms   min {:>8.2} ms   max {:>8.2} ms",
        times.len(),
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3
    );
}

fn peak_rss_kib() -> u64 {
    peak_rss_kib_of("self")
}

/// VmHWM of `/proc/<process>` (`self` or a pid), KiB.
fn peak_rss_kib_of(process: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{process}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The nodes' runtime and the sandbox on a runtime of its own (threads named `nodes` and
/// `sandbox`), so that the storm can say which side used the CPU; they share the two cores.
struct Bench {
    rt: tokio::runtime::Runtime,
    sandbox: Sandbox,
    _sandbox_rt: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
}

impl Bench {
    fn new() -> Bench {
        let _ = bootlet::cluster::crypto_provider().install_default();
        let runtime = |name: &str| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name(name)
                .enable_all()
                .build()
                .unwrap()
        };
        let rt = runtime("nodes");
        let sandbox_rt = runtime("sandbox");
        let sandbox = sandbox_rt
            .block_on(Sandbox::start(SandboxOptions {
                auto_approve_serving: true,
                ..Default::default()
            }))
            .unwrap();
        let dir = scratch();
        sandbox.write_files(dir.path()).unwrap();
        Bench {
            rt,
            sandbox,
            _sandbox_rt: sandbox_rt,
            dir,
        }
    }

    fn admin(&self) -> PathBuf {
        self.dir.path().join("admin.conf")
    }

    /// A fresh token the sandbox knows, for authentication and signing (as `token create` makes).
    fn token(&self) -> bootlet::token::BootstrapToken {
        let token = bootlet::token::BootstrapToken::generate().unwrap();
        self.sandbox.put(
            "secrets",
            "kube-system",
            bootlet::sandbox::token_secret(
                &token,
                None,
                &["authentication", "signing"],
                bootlet::token::DEFAULT_NODE_TOKEN_GROUP,
            ),
        );
        token
    }

    /// A bootstrap kubeconfig for a fresh token the sandbox knows.
    fn bootstrap(&self) -> PathBuf {
        let token = self.token();
        let p = self
            .dir
            .path()
            .join(format!("bootstrap-{}.conf", token.id()));
        std::fs::write(
            &p,
            bootlet::kubeconfig::render_bootstrap(
                self.sandbox.url(),
                self.sandbox.ca_pem().as_bytes(),
                &token,
            )
            .unwrap(),
        )
        .unwrap();
        p
    }
}

fn settings(o: Options) -> Settings {
    Settings::resolve(o, None).unwrap()
}

/// A join that reports its failure instead of panicking (the storm counts them).
async fn try_join(o: Options) -> Result<Duration, String> {
    let s = settings(o);
    let t = Instant::now();
    let outcome = execute(Command::join(), s, Output::quiet()).await;
    match outcome.error {
        Some(e) => Err(e.message().to_string()),
        None => Ok(t.elapsed()),
    }
}

async fn join(o: Options) -> Duration {
    let s = settings(o);
    let t = Instant::now();
    let outcome = execute(Command::join(), s, Output::quiet()).await;
    if let Some(e) = outcome.error {
        panic!("join failed: {e}");
    }
    t.elapsed()
}

fn node_options(root: &Path, node: &str, bootstrap: &Path) -> Options {
    Options {
        root: Some(root.to_path_buf()),
        node_name: Some(node.into()),
        bootstrap_kubeconfig: Some(bootstrap.to_path_buf()),
        node_ip: Some(vec!["10.0.0.1".into()]),
        ..Default::default()
    }
}

fn whole(b: &Bench, n: usize) {
    let roots = scratch();
    let times: Vec<Duration> = (0..n)
        .map(|i| {
            let o = Options {
                root: Some(roots.path().join(format!("w{i}"))),
                node_name: Some(format!("whole-{i}")),
                admin_kubeconfig: Some(b.admin()),
                node_ip: Some(vec!["10.0.0.1".into()]),
                ..Default::default()
            };
            b.rt.block_on(join(o))
        })
        .collect();
    report("whole join (admin+node)", times);
}

fn node(b: &Bench, n: usize) {
    let roots = scratch();
    let bootstrap = b.bootstrap();
    b.sandbox.reset_counters();
    let cpu = CpuMark::now();
    let times: Vec<Duration> = (0..n)
        .map(|i| {
            b.rt.block_on(join(node_options(
                &roots.path().join(format!("n{i}")),
                &format!("node-{i}"),
                &bootstrap,
            )))
        })
        .collect();
    let (used, sandbox_used) = cpu.used();
    let requests: u64 = b
        .sandbox
        .counters()
        .iter()
        .filter(|(u, _)| u.starts_with("system:bootstrap:") || u.starts_with("system:node:"))
        .flat_map(|(_, v)| v.values())
        .sum();
    report("node-side join", times);
    println!(
        "{:<28} {:.2} requests per node-side join",
        "",
        requests as f64 / n as f64
    );
    cpu_bound_of_a_storm(used / n as f64, sandbox_used / n as f64);
}

/// What one join at a time costs in CPU (both sides, no other join competing), and so the least
/// wall time a storm of 1,000 can take on this machine's cores however its joins overlap.
fn cpu_bound_of_a_storm(per_join: f64, sandbox_per_join: f64) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    println!(
        "{:<28} CPU {:.2} ms per join (the sandbox's threads {:.2} ms, the node side {:.2} ms): 1,000 joins on {cpus} CPUs need at least {:.2} s",
        "",
        per_join * 1e3,
        sandbox_per_join * 1e3,
        (per_join - sandbox_per_join) * 1e3,
        1000.0 * per_join / cpus
    );
}

fn renew(b: &Bench, n: usize) {
    let roots = scratch();
    let root = roots.path().join("renewed");
    b.rt.block_on(join(node_options(&root, "renew-node", &b.bootstrap())));
    b.sandbox.reset_counters();
    let times: Vec<Duration> = (0..n)
        .map(|_| {
            let mut s = settings(Options {
                root: Some(root.clone()),
                ..Default::default()
            });
            s.force = true;
            let t = Instant::now();
            let outcome =
                b.rt.block_on(execute(Command::Run("renew".into()), s, Output::quiet()));
            if let Some(e) = outcome.error {
                panic!("renew failed: {e}");
            }
            t.elapsed()
        })
        .collect();
    let requests: u64 = b
        .sandbox
        .counters()
        .iter()
        .filter(|(u, _)| u.starts_with("system:node:"))
        .flat_map(|(_, v)| v.values())
        .sum();
    report("forced renew (both certs)", times);
    println!(
        "{:<28} {:.2} requests per renewal, all as the node",
        "",
        requests as f64 / n as f64
    );
}

/// Runs `cmd`, insisting that it succeeds (its stderr is the message if not).
fn output_ok(cmd: &mut std::process::Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// CPU seconds this process has used (utime + stime; 100 ticks a second).
fn cpu_seconds() -> f64 {
    stat_cpu_seconds(Path::new("/proc/self/stat"))
}

/// utime + stime of a /proc `stat` file (a process's or a thread's), seconds.
fn stat_cpu_seconds(path: &Path) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let Some(i) = stat.rfind(')') else { return 0.0 };
    let f: Vec<&str> = stat[i + 2..].split_whitespace().collect();
    (f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0)) / 100.0
}

/// CPU seconds used so far by this process's live threads named `name` (per /proc/self/task).
fn thread_cpu_seconds(name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .map(|t| stat_cpu_seconds(&t.path().join("stat")))
        .sum()
}

/// The process's CPU and its sandbox threads' CPU at one moment, to tell what the sandbox spent
/// from what the nodes spent since. The sandbox's runtime threads live as long as it does; the
/// nodes' come and go (a sync hands its worker off to a new thread), so theirs is the process's CPU
/// less the sandbox's.
struct CpuMark {
    process: f64,
    sandbox: f64,
}

impl CpuMark {
    fn now() -> CpuMark {
        CpuMark {
            process: cpu_seconds(),
            sandbox: thread_cpu_seconds("sandbox"),
        }
    }

    /// CPU seconds since the mark: the whole process's, and the sandbox threads' part of it.
    fn used(&self) -> (f64, f64) {
        (
            cpu_seconds() - self.process,
            thread_cpu_seconds("sandbox") - self.sandbox,
        )
    }
}

fn idle_cpu(b: &Bench, label: &str) {
    let before = cpu_seconds();
    b.rt.block_on(async { tokio::time::sleep(Duration::from_secs(5)).await });
    println!(
        "{:<28} idle CPU {:.2} s over 5 s ({label})",
        "",
        cpu_seconds() - before
    );
}

/// Joins alternate between the fresh and the crowded sandbox, so that drift of the disk or the
/// machine falls on both alike.
fn crowded(n: usize) {
    let fresh = Bench::new();
    let full = Bench::new();
    let key = bootlet::pki::keys::PrivateKey::generate().unwrap();
    let pem =
        bootlet::pki::csr::build(&key, "system:node:old", &["system:nodes"], &[], &[]).unwrap();
    use base64::Engine;
    let request = base64::engine::general_purpose::STANDARD.encode(pem);
    for i in 0..4000 {
        full.sandbox.put(
            "certificatesigningrequests",
            "",
            serde_json::json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
                "metadata": {"name": format!("old-{i}")},
                "spec": {"request": request, "signerName": "kubernetes.io/kube-apiserver-client-kubelet", "usages": ["digital signature", "client auth"], "username": "system:node:old"},
                "status": {"conditions": [{"type": "Denied", "status": "True", "reason": "Old", "message": "old"}]}}),
        );
    }
    full.rt
        .block_on(async { tokio::time::sleep(Duration::from_secs(1)).await });
    let roots = scratch();
    let (bf, bc) = (fresh.bootstrap(), full.bootstrap());
    let mut tf = Vec::new();
    let mut tc = Vec::new();
    for i in 0..n {
        tf.push(fresh.rt.block_on(join(node_options(
            &roots.path().join(format!("f{i}")),
            &format!("fresh-{i}"),
            &bf,
        ))));
        tc.push(full.rt.block_on(join(node_options(
            &roots.path().join(format!("c{i}")),
            &format!("crowded-{i}"),
            &bc,
        ))));
    }
    tf.sort();
    tc.sort();
    let ratio = percentile(&tc, 0.5).as_secs_f64() / percentile(&tf, 0.5).as_secs_f64();
    report("node-side join, fresh", tf);
    report("node-side join, 4,000 CSRs", tc);
    println!("{:<28} {ratio:.2}x the fresh sandbox's median", "");
    idle_cpu(&fresh, "fresh sandbox");
    idle_cpu(&full, "4,000 CSRs stored");
}

/// At most `in_flight` joins at a time (all of them when `in_flight` >= `n`): one process cannot hold
/// the sockets and files of 10,000 simultaneous TLS clients and their server within its file limit,
/// where 10,000 machines each hold their own.
fn storm(b: &Bench, n: usize, in_flight: usize) {
    let bootstrap = b.bootstrap();
    let before = peak_rss_kib();
    let cpu = CpuMark::now();
    let syncs_before = bootlet::files::SYNCS.load(std::sync::atomic::Ordering::Relaxed);
    let (total, p99) = storm_joins(b, &bootstrap, n, in_flight);
    storm_headline(
        "storm",
        n,
        total,
        p99,
        &format!(
            "peak RSS {} MiB (before {} MiB; sandbox and all joins in one process, at most {} at a time)",
            peak_rss_kib() / 1024,
            before / 1024,
            in_flight.min(n)
        ),
    );
    let syncs = bootlet::files::SYNCS.load(std::sync::atomic::Ordering::Relaxed) - syncs_before;
    let (used, sandbox_used) = cpu.used();
    println!(
        "{:<28} CPU {:.2} s: the sandbox's threads {:.2} s, the rest (the nodes) {:.2} s; {} syncs made ({:.1} per join, 7 when a join runs alone)",
        "",
        used,
        sandbox_used,
        used - sandbox_used,
        syncs,
        syncs as f64 / n as f64
    );
}

fn storm_headline(label: &str, n: usize, total: Duration, p99: Duration, rest: &str) {
    println!(
        "{label:<28} n={n:<5} total {:>8.2} s   {:>7.1} joins/s   p99 {:>8.2} ms   {rest}",
        total.as_secs_f64(),
        n as f64 / total.as_secs_f64(),
        ms(p99),
    );
}

/// `n` node-side joins against `bootstrap`'s cluster, at most `in_flight` at a time: the wall
/// time and the p99 join time (queueing included). Failures are counted and the first shown.
fn storm_joins(b: &Bench, bootstrap: &Path, n: usize, in_flight: usize) -> (Duration, Duration) {
    let roots = scratch();
    let started = Instant::now();
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(in_flight.max(1)));
    let times: Vec<Duration> = b.rt.block_on(async {
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let o = node_options(
                    &roots.path().join(format!("s{i}")),
                    &format!("storm-{i}"),
                    bootstrap,
                );
                let gate = gate.clone();
                tokio::spawn(async move {
                    let _turn = gate.acquire_owned().await.expect("open");
                    try_join(o).await
                })
            })
            .collect();
        let mut out = Vec::with_capacity(n);
        let mut failures = Vec::new();
        for (i, t) in tasks.into_iter().enumerate() {
            match t.await.unwrap() {
                Ok(d) => out.push(d),
                Err(e) => failures.push(format!("storm-{i}: {e}")),
            }
        }
        if !failures.is_empty() {
            println!("storm: {} of {n} joins failed; the first:", failures.len());
            for f in failures.iter().take(5) {
                println!("  {f}");
            }
        }
        out
    });
    let total = started.elapsed();
    let mut sorted = times;
    sorted.sort();
    (total, percentile(&sorted, 0.99))
}

/// The storm against a sandbox in its own process (`bootlet sandbox`, the release binary): what the
/// control plane spends on it (CPU and peak RSS of that process, from /proc) apart from the nodes,
/// which share its two cores from this process.
fn storm_apart(b: &Bench, n: usize, in_flight: usize) {
    use std::io::BufRead;
    let Some(exe) = release_binary() else {
        println!("storm-apart: build the binary first with `cargo build --release`");
        return;
    };
    let dir = scratch();
    let sb = dir.path().join("sb");
    let mut server = std::process::Command::new(&exe)
        .args(["sandbox", "--auto-approve-serving", "--dir"])
        .arg(&sb)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Held open until the end: closed, the sandbox's next line of output would kill it (EPIPE).
    let mut said = std::io::BufReader::new(server.stdout.take().unwrap());
    let mut first = String::new();
    said.read_line(&mut first).unwrap();
    let url = first
        .split_whitespace()
        .last()
        .unwrap_or_default()
        .to_string();
    let token_file = dir.path().join("token");
    output_ok(
        std::process::Command::new(&exe)
            .args(["token", "create", "--kubeconfig"])
            .arg(sb.join("admin.conf"))
            .arg("--token-file")
            .arg(&token_file),
    );
    let token =
        bootlet::token::BootstrapToken::parse(&std::fs::read_to_string(&token_file).unwrap())
            .unwrap();
    let ca = std::fs::read(sb.join("ca.crt")).unwrap();
    let bootstrap = dir.path().join("bootstrap.conf");
    std::fs::write(
        &bootstrap,
        bootlet::kubeconfig::render_bootstrap(&url, &ca, &token).unwrap(),
    )
    .unwrap();
    let pid = server.id();
    let sandbox_cpu = || stat_cpu_seconds(Path::new(&format!("/proc/{pid}/stat")));
    let (cpu_before, nodes_before) = (sandbox_cpu(), cpu_seconds());
    let (total, p99) = storm_joins(b, &bootstrap, n, in_flight);
    storm_headline(
        "storm, sandbox apart",
        n,
        total,
        p99,
        &format!("(at most {} at a time)", in_flight.min(n)),
    );
    println!(
        "{:<28} sandbox process: CPU {:.2} s, peak RSS {} MiB; nodes' process: CPU {:.2} s, peak RSS {} MiB",
        "",
        sandbox_cpu() - cpu_before,
        peak_rss_kib_of(&pid.to_string()) / 1024,
        cpu_seconds() - nodes_before,
        peak_rss_kib() / 1024
    );
    let _ = server.kill();
    let _ = server.wait();
    drop(said);
}

fn dryrun(n: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = scratch();
    let ca = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/kubeadm-golden/ca.pem"
    ))
    .unwrap();
    let disc = dir.path().join("discovery.conf");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: k\n  cluster:\n    server: https://127.0.0.1:1\n    certificate-authority-data: {}\ncontexts:\n- name: c\n  context:\n    cluster: k\n    user: ''\ncurrent-context: c\n",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, ca)
    );
    std::fs::write(&disc, text).unwrap();
    let times: Vec<Duration> = (0..n)
        .map(|i| {
            let o = Options {
                root: Some(dir.path().join("root")),
                node_name: Some("dry".into()),
                discovery_file: Some(disc.clone()),
                token: Some("abcdef.0123456789abcdef".into()),
                node_ip: Some(vec!["10.0.0.1".into()]),
                dry_run: Some(true),
                dry_run_dir: Some(dir.path().join(format!("d{i}"))),
                ..Default::default()
            };
            rt.block_on(join(o))
        })
        .collect();
    report("offline dry-run (whole flow)", times);
}

/// Where a node-side join's time goes, phase by phase (the pieces' floor is `floor`).
fn profile(b: &Bench, n: usize) {
    let roots = scratch();
    let bootstrap = b.bootstrap();
    let mut by_phase: std::collections::BTreeMap<String, Vec<Duration>> = Default::default();
    let syncs_before = bootlet::files::SYNCS.load(std::sync::atomic::Ordering::Relaxed);
    for i in 0..n {
        let s = settings(node_options(
            &roots.path().join(format!("p{i}")),
            &format!("prof-{i}"),
            &bootstrap,
        ));
        let outcome = b.rt.block_on(execute(Command::join(), s, Output::quiet()));
        by_phase
            .entry("(outside phases)".into())
            .or_default()
            .push(Duration::from_secs_f64(
                outcome.report.outside_phases_ms / 1e3,
            ));
        by_phase
            .entry("(total)".into())
            .or_default()
            .push(Duration::from_secs_f64(outcome.report.total_ms / 1e3));
        for p in outcome.report.phases {
            by_phase
                .entry(p.name)
                .or_default()
                .push(Duration::from_secs_f64(p.duration_ms / 1e3));
        }
    }
    let syncs = bootlet::files::SYNCS.load(std::sync::atomic::Ordering::Relaxed) - syncs_before;
    println!(
        "{:<28} {:.1} syncs (fsync and syncfs) per node-side join",
        "profile: syncs",
        syncs as f64 / n as f64
    );
    for (phase, mut times) in by_phase {
        times.sort();
        println!(
            "{:<28} {phase:<12} median {:.3} ms",
            "profile: phase",
            percentile(&times, 0.5).as_secs_f64() * 1e3
        );
    }
}

fn release_binary() -> Option<PathBuf> {
    let exe = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/target/release/bootlet"
    ));
    exe.exists().then_some(exe)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    percentile(&times, 0.5)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Wall time of `exe args`, which must succeed.
fn time_process(exe: &Path, args: &[&str]) -> Duration {
    let t = Instant::now();
    let out = std::process::Command::new(exe)
        .args(args)
        .stdout(std::process::Stdio::null())
        .output()
        .unwrap();
    let d = t.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    d
}

/// A node-side `bootlet join` process, fresh root and node name, told by `how` where its
/// credentials come from.
fn process_join(exe: &Path, root: &Path, node: &str, how: &[&str]) -> Duration {
    let fixed = [
        "join",
        "--root",
        root.to_str().unwrap(),
        "--node-name",
        node,
        "--node-ip",
        "10.0.0.1",
    ];
    time_process(exe, &[&fixed[..], how].concat())
}

/// The median of `n` node-side `bootlet join` processes told `how`, each a fresh node under
/// `roots` (named `floor-<prefix><i>`).
fn median_process_join(exe: &Path, roots: &Path, prefix: &str, n: usize, how: &[&str]) -> Duration {
    median(
        (0..n)
            .map(|i| {
                let node = format!("{prefix}{i}");
                process_join(exe, &roots.join(&node), &format!("floor-{node}"), how)
            })
            .collect(),
    )
}

/// How `kubeadm join` is usually run: the endpoint, a token (from a file) and the CA pin, with
/// discovery's two anonymous cluster-info fetches before the join proper.
fn token_discovery_args(b: &Bench, token_file: &Path) -> Vec<String> {
    let token = b.token();
    std::fs::write(token_file, format!("{}\n", token.expose_full())).unwrap();
    let pin = b.sandbox.ca_pin().unwrap();
    let endpoint = b.sandbox.url().trim_start_matches("https://").to_string();
    vec![
        endpoint,
        "--token-file".into(),
        token_file.to_str().unwrap().into(),
        "--discovery-token-ca-cert-hash".into(),
        pin.to_string(),
    ]
}

/// The pieces a node-side join cannot avoid, each measured here, and bootlet against their sum.
fn floor(b: &Bench, n: usize) {
    let keygen = median(
        (0..n)
            .map(|_| {
                let t = Instant::now();
                bootlet::pki::keys::PrivateKey::generate().unwrap();
                t.elapsed()
            })
            .collect(),
    );
    let dir = scratch();
    let write = median(
        (0..n)
            .map(|i| {
                let p = dir.path().join(format!("f{}", i % 6));
                let t = Instant::now();
                bootlet::files::write_atomic(&p, &[0u8; 1024], 0o600).unwrap();
                t.elapsed()
            })
            .collect(),
    );
    let node_access = {
        let roots = scratch();
        let root = roots.path().join("floor");
        b.rt.block_on(join(node_options(&root, "floor-node", &b.bootstrap())));
        let conf = root.join("etc/kubernetes/kubelet.conf");
        bootlet::kubeconfig::load(&conf, "kubelet.conf").unwrap()
    };
    let (handshake, request): (Vec<Duration>, Vec<Duration>) = (0..n)
        .map(|_| {
            b.rt.block_on(async {
                let client = bootlet::cluster::kube_client(&node_access).unwrap();
                let t = Instant::now();
                client.apiserver_version().await.unwrap();
                let first = t.elapsed();
                let t = Instant::now();
                client.apiserver_version().await.unwrap();
                (first, t.elapsed())
            })
        })
        .unzip();
    let (handshake, request) = (median(handshake), median(request));
    let sum = 2 * keygen + 2 * handshake + 2 * request + 6 * write;
    println!(
        "{:<28} key generation {:.3} ms, TLS handshake (client certificate) + first request {:.3} ms, request on an open connection {:.3} ms, atomic 1 KiB write (fsync file and directory) {:.3} ms",
        "floor: pieces",
        ms(keygen),
        ms(handshake),
        ms(request),
        ms(write)
    );
    println!(
        "{:<28} 2 keys + 2 handshakes + 2 more requests + 6 atomic writes = {:.2} ms",
        "floor: sum",
        ms(sum)
    );
    let roots = scratch();
    let bootstrap = b.bootstrap();
    let inproc = median(
        (0..n)
            .map(|i| {
                b.rt.block_on(join(node_options(
                    &roots.path().join(format!("i{i}")),
                    &format!("floor-i{i}"),
                    &bootstrap,
                )))
            })
            .collect(),
    );
    println!(
        "{:<28} median {:.2} ms = {:.2}x the floor",
        "floor: join in-process",
        ms(inproc),
        inproc.as_secs_f64() / sum.as_secs_f64()
    );
    let Some(exe) = release_binary() else {
        println!("floor: as a process: build it first with `cargo build --release`");
        return;
    };
    let version = median((0..n).map(|_| time_process(&exe, &["--version"])).collect());
    let by_bootstrap = ["--bootstrap-kubeconfig", bootstrap.to_str().unwrap()];
    let process = median_process_join(&exe, roots.path(), "p", n, &by_bootstrap);
    println!(
        "{:<28} median {:.2} ms = {:.2}x the floor (+ a process start: `bootlet --version` takes {:.2} ms, {:.2}x with it)",
        "floor: join as a process",
        ms(process),
        process.as_secs_f64() / sum.as_secs_f64(),
        ms(version),
        process.as_secs_f64() / (sum + version).as_secs_f64()
    );
    let token_file = roots.path().join("token");
    let how = token_discovery_args(b, &token_file);
    let how: Vec<&str> = how.iter().map(String::as_str).collect();
    let by_token = median_process_join(&exe, roots.path(), "t", n, &how);
    println!(
        "{:<28} median {:.2} ms ({:+.2} ms for discovery's anonymous fetches and the signature and pin checks)",
        "floor: token join, process",
        ms(by_token),
        ms(by_token) - ms(process)
    );
}

/// What a run costs before its first phase: settings, graph and plan (a fresh node's `plan`, which
/// reads and checks every input), and taking the run lock; then a join of a node that is already
/// joined (every phase checked, the installed credentials verified, nothing run).
fn startup(b: &Bench, n: usize) {
    let roots = scratch();
    let bootstrap = b.bootstrap();
    let fresh = roots.path().join("fresh");
    let plan = median(
        (0..n)
            .map(|_| {
                let t = Instant::now();
                let s = settings(node_options(&fresh, "startup-fresh", &bootstrap));
                let plan = Command::Plan("join".into());
                let outcome = b.rt.block_on(execute(plan, s, Output::quiet()));
                assert!(outcome.error.is_none(), "{:?}", outcome.error);
                t.elapsed()
            })
            .collect(),
    );
    let layout = settings(node_options(&fresh, "startup-fresh", &bootstrap))
        .file_layout()
        .unwrap();
    let lock = median(
        (0..n)
            .map(|_| {
                let journal = bootlet::engine::journal::Journal::new(
                    "startup-fresh",
                    bootlet::files::LayoutKind::Kubelet,
                );
                let world = bootlet::engine::world::World::new(layout.clone(), None, journal);
                let t = Instant::now();
                drop(bootlet::engine::lock::acquire(&world, "bench").unwrap());
                t.elapsed()
            })
            .collect(),
    );
    println!(
        "{:<28} settings+graph+plan (fresh node) {:.3} ms + lock {:.3} ms = {:.3} ms",
        "startup: in-process",
        ms(plan),
        ms(lock),
        ms(plan + lock)
    );
    let root = roots.path().join("joined");
    b.rt.block_on(join(node_options(&root, "startup-node", &bootstrap)));
    let rerun = median(
        (0..n)
            .map(|_| {
                let t = Instant::now();
                let s = settings(Options {
                    root: Some(root.clone()),
                    ..Default::default()
                });
                let outcome = b.rt.block_on(execute(Command::join(), s, Output::quiet()));
                assert!(outcome.error.is_none(), "{:?}", outcome.error);
                assert!(outcome.report.phases.iter().all(|p| p.status != "ran"));
                t.elapsed()
            })
            .collect(),
    );
    println!(
        "{:<28} median {:.3} ms (lock, every check, the installed credentials verified, nothing run)",
        "startup: joined node again",
        ms(rerun)
    );
    let Some(exe) = release_binary() else {
        return;
    };
    let r = root.to_str().unwrap();
    let version = median((0..n).map(|_| time_process(&exe, &["--version"])).collect());
    let again = median(
        (0..n)
            .map(|_| time_process(&exe, &["join", "--root", r]))
            .collect(),
    );
    println!(
        "{:<28} `bootlet --version` {:.2} ms, `bootlet join` of a joined node {:.2} ms (as processes, medians)",
        "startup: processes",
        ms(version),
        ms(again)
    );
}

/// The release binary's size and one `join`'s peak RSS (node side, against the sandbox).
fn binary(b: &Bench) {
    let exe = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/target/release/bootlet"
    ));
    let Ok(meta) = std::fs::metadata(&exe) else {
        println!("binary: build it first with `cargo build --release`");
        return;
    };
    println!(
        "{:<28} {} bytes ({:.2} MiB)",
        "release binary",
        meta.len(),
        meta.len() as f64 / 1048576.0
    );
    let roots = scratch();
    let bootstrap = b.bootstrap();
    let mut rss = Vec::new();
    for i in 0..5 {
        let out = output_ok(
            std::process::Command::new("/usr/bin/time")
                .args(["-f", "%M"])
                .arg(&exe)
                .args([
                    "join",
                    "--bootstrap-kubeconfig",
                    bootstrap.to_str().unwrap(),
                    "--root",
                    roots.path().join(format!("r{i}")).to_str().unwrap(),
                    "--node-name",
                    &format!("rss-{i}"),
                ]),
        );
        let kib: u64 = String::from_utf8_lossy(&out.stderr)
            .lines()
            .last()
            .unwrap_or("0")
            .trim()
            .parse()
            .unwrap_or(0);
        rss.push(kib);
    }
    rss.sort();
    println!(
        "{:<28} median {} KiB ({:.1} MiB), max {} KiB, over 5 node-side joins (/usr/bin/time %M)",
        "join peak RSS",
        rss[2],
        rss[2] as f64 / 1024.0,
        rss[4]
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let want = |name: &str| args.is_empty() || args.iter().any(|a| a == name);
    let n: usize = std::env::var("BOOTLET_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let storm_n: usize = std::env::var("BOOTLET_STORM_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    println!(
        "bootlet benchmarks on {} CPUs",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    if args.iter().any(|a| a == "real") {
        real::run();
        if args.len() == 1 {
            return;
        }
    }
    if want("dryrun") {
        dryrun(n);
    }
    let b = Bench::new();
    if want("whole") {
        whole(&b, n);
    }
    if want("node") {
        node(&b, n);
    }
    if want("crowded") {
        crowded(n);
    }
    if want("renew") {
        renew(&b, n);
    }
    if want("profile") {
        profile(&b, 50);
    }
    if want("binary") {
        binary(&b);
    }
    if want("floor") {
        floor(&b, n);
    }
    if want("startup") {
        startup(&b, n);
    }
    if want("storm") {
        let fresh = Bench::new();
        let in_flight: usize = std::env::var("BOOTLET_STORM_IN_FLIGHT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        storm(&fresh, storm_n, in_flight);
    }
    if want("storm-apart") {
        let in_flight: usize = std::env::var("BOOTLET_STORM_IN_FLIGHT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        storm_apart(&b, storm_n, in_flight);
    }
}
