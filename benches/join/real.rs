//! `cargo bench --bench join -- real`: bootlet against the real control plane (`tests/kube/`),
//! side by side with the kubelet's own client TLS bootstrap of the same release.
//!
//! One run starts a control plane (`tests/kube/up`, initialized as `kubeadm init` leaves one) and
//! measures, interleaved so that the machine's drift touches all alike, `n` each of:
//!
//! - `bootlet join --bootstrap-kubeconfig … --skip-phases serving-csr` as a process (the release
//!   binary), until it exits 0 having written kubelet.conf;
//! - the real kubelet as a process, started with `--bootstrap-kubeconfig` and rotation off, from
//!   exec until the kubelet.conf its bootstrap writes names a client certificate on disk (it runs
//!   `LoadClientCert` synchronously before it looks for a container runtime);
//! - `kubecp bootstrap` (tests/kube), a Go peer calling the kubelet's `LoadClientCert` itself:
//!   the bootstrap without the kubelet's start, timed inside the peer and as a process.
//!
//! Each method has a token of its own, so that the API server's audit log tells their requests
//! apart. A watcher of CSRs records when each CSR appeared, was approved and was issued, which
//! splits a join's wall time into what the control plane took (csrapproving, csrsigning) and the
//! rest. Then batches of each alone give the control plane's CPU per join (from /proc) and its
//! requests per join (from the audit log); then storms of concurrent joins, by bootlet in this
//! process and by the Go peer. The last line is
//! `real: bootlet <A> ms, kubelet <B> ms, ratio <A/B>` (medians, client-only joins as processes).
//!
//! Environment: `BOOTLET_BENCH_N` (interleaved samples of each, default 60),
//! `BOOTLET_REAL_STORM_N` (default 500), `BOOTLET_REAL_STORM_IN_FLIGHT` (default 50),
//! `BOOTLET_REAL_BIG_STORM_N` (a second, larger storm, e.g. 2000; none by default).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{median, ms, percentile, scratch};

#[path = "csr_timing.rs"]
mod csr_timing;
#[path = "joiners.rs"]
mod joiners;
#[path = "real_plane.rs"]
mod real_plane;

use csr_timing::{Split, csr_of, split, watch_csrs};
use joiners::{Joiners, children_cpu, own_cpu, peer_times};
use real_plane::{Plane, audit_counts, audit_offset, audit_settled, peak_memory};

/// The three ways a node gets its client credentials here.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Method {
    Bootlet,
    Kubelet,
    Peer,
}

impl Method {
    const ALL: [Method; 3] = [Method::Bootlet, Method::Kubelet, Method::Peer];

    /// The bootstrap token this method joins with (its id names it in the audit log).
    fn token(self) -> &'static str {
        match self {
            Method::Bootlet => "blbnch.0123456789abcdef",
            Method::Kubelet => "klbnch.0123456789abcdef",
            Method::Peer => "gpbnch.0123456789abcdef",
        }
    }

    fn bootstrap_user(self) -> String {
        format!("system:bootstrap:{}", &self.token()[..6])
    }

    /// Node names of this method start with this.
    fn prefix(self) -> &'static str {
        match self {
            Method::Bootlet => "real-bl-",
            Method::Kubelet => "real-kl-",
            Method::Peer => "real-gp-",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Method::Bootlet => "bootlet join (process)",
            Method::Kubelet => "kubelet bootstrap (process)",
            Method::Peer => "Go peer LoadClientCert",
        }
    }
}

/// One join: wall time from start to verified credentials, the CPU the process used, and when
/// it ran (to find its CSR).
#[derive(Clone, Copy)]
struct Sample {
    wall: Duration,
    cpu: Duration,
    start: Instant,
    end: Instant,
}

fn report(label: &str, samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let (p50, p99) = (percentile(&sorted, 0.5), percentile(&sorted, 0.99));
    println!(
        "{label:<32} n={:<4} median {:>8.2} ms   p99 {:>8.2} ms",
        sorted.len(),
        ms(p50),
        ms(p99)
    );
    p50
}

fn median_of(v: impl Iterator<Item = Duration>) -> Duration {
    let v: Vec<Duration> = v.collect();
    if v.is_empty() {
        Duration::ZERO
    } else {
        median(v)
    }
}

/// A pause before each measured join, so that each finds the control plane as a lone join would.
/// kube-controller-manager's clients are rate-limited (`--kube-api-qps` 20, `--kube-api-burst`
/// 30; kubeadm sets neither) and csrapproving and csrsigning spend three requests per CSR: joins
/// back to back at 10 per second empty the bucket, and then whichever join follows the quickest
/// waits for its approval (75 ms measured). 250 ms refills what one join spends.
fn settle() {
    std::thread::sleep(Duration::from_millis(250));
}

/// Each control-plane process's CPU seconds per second with nothing joining (over 5 s).
fn idle_cpu_rates(plane: &Plane) -> BTreeMap<String, f64> {
    audit_settled(&plane.audit_log());
    let before = plane.cpu_seconds();
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    let after = plane.cpu_seconds();
    let secs = t.elapsed().as_secs_f64();
    after
        .iter()
        .map(|(k, v)| (k.clone(), (v - before[k]) / secs))
        .collect()
}

/// What a batch of `count` joins of one method cost the control plane.
/// `idle` is each process's CPU per second at rest, taken off what the batch's time costs anyway.
fn batch(
    plane: &Plane,
    j: &Joiners,
    m: Method,
    (first, count): (usize, usize),
    idle: &BTreeMap<String, f64>,
) {
    audit_settled(&plane.audit_log());
    let offset = audit_offset(&plane.audit_log());
    let cpu = plane.cpu_seconds();
    let began = Instant::now();
    let mut wall = Duration::ZERO;
    for i in first..first + count {
        settle();
        wall += j
            .join(m, i)
            .unwrap_or_else(|e| panic!("{m:?} join {i}: {e}"))
            .wall;
    }
    // Let the controllers finish what the joins started, and the audit log catch up.
    audit_settled(&plane.audit_log());
    let after = plane.cpu_seconds();
    let elapsed = began.elapsed().as_secs_f64();
    let counts = audit_counts(&plane.audit_log(), offset);
    let own: usize = counts
        .iter()
        .filter(|(u, _)| {
            *u == &m.bootstrap_user() || u.starts_with(&format!("system:node:{}", m.prefix()))
        })
        .map(|(_, c)| c)
        .sum();
    let controllers: usize = counts
        .iter()
        .filter(|(u, _)| {
            u.starts_with("system:serviceaccount:kube-system:")
                || u.starts_with("system:kube-controller-manager")
        })
        .map(|(_, c)| c)
        .sum();
    let per = |x: f64| x / count as f64;
    let cpu_ms: BTreeMap<&String, f64> = after
        .iter()
        .map(|(k, v)| (k, per((v - cpu[k] - idle[k] * elapsed).max(0.0)) * 1e3))
        .collect();
    println!(
        "{:<32} {count} joins, {:.1} s of joining: {:.1} requests/join by the node, {:.1} by the controllers; control-plane CPU/join {:.1} ms ({})",
        m.label(),
        wall.as_secs_f64(),
        per(own as f64),
        per(controllers as f64),
        cpu_ms.values().sum::<f64>(),
        cpu_ms
            .iter()
            .map(|(k, v)| format!("{k} {v:.1} ms"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}

/// `n` joins at once (at most `in_flight` in flight) by bootlet in this process or by the Go
/// peer: joins per second, p50/p99, failures, control-plane CPU and peak memory, and the
/// controllers' request rate (the bottleneck's witness).
fn storm(plane: &Plane, j: &Joiners, m: Method, n: usize, in_flight: usize, tag: &str) {
    audit_settled(&plane.audit_log());
    let offset = audit_offset(&plane.audit_log());
    let cpu = plane.cpu_seconds();
    let client_cpu = (own_cpu(), children_cpu());
    let (stop, sampler) = peak_memory(plane);
    let t = Instant::now();
    let (times, failed) = match m {
        Method::Bootlet => bootlet_storm(j, n, in_flight, tag),
        _ => {
            let out = Command::new(&j.kubecp)
                .arg("bootstrap")
                .arg(&j.bootstrap[&Method::Peer])
                .arg(j.roots.path().join(format!("storm-{tag}")))
                .args([
                    &n.to_string(),
                    &in_flight.to_string(),
                    &format!("real-gp-{tag}-"),
                ])
                .output()
                .unwrap();
            peer_times(&String::from_utf8_lossy(&out.stdout))
        }
    };
    let wall = t.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    let client = (own_cpu() - client_cpu.0) + (children_cpu() - client_cpu.1);
    let after = plane.cpu_seconds();
    audit_settled(&plane.audit_log());
    let counts = audit_counts(&plane.audit_log(), offset);
    let kcm: usize = counts
        .iter()
        .filter(|(u, _)| u.starts_with("system:serviceaccount:kube-system:"))
        .map(|(_, c)| c)
        .sum();
    // The controllers' clients, busiest first: each has its own client-side rate limit.
    let mut busiest: Vec<(&String, &usize)> = counts
        .iter()
        .filter(|(u, _)| u.starts_with("system:serviceaccount:kube-system:"))
        .collect();
    busiest.sort_by(|a, b| b.1.cmp(a.1));
    let mut sorted = times.clone();
    sorted.sort();
    let cp: f64 = after.iter().map(|(k, v)| v - cpu[k]).sum();
    println!(
        "storm {:<26} n={n} ({in_flight} in flight): {:.1} s, {:.1} joins/s, p50 {:.0} ms, p99 {:.0} ms, {failed} failed",
        match m {
            Method::Bootlet => "bootlet (one process)",
            _ => "Go peer (one process)",
        },
        wall.as_secs_f64(),
        times.len() as f64 / wall.as_secs_f64(),
        ms(percentile(&sorted, 0.5)),
        ms(percentile(&sorted, 0.99)),
    );
    println!(
        "      control plane CPU {:.1} s ({:.0} % of 2 cores; {}), the joiners' CPU {:.1} s; peak RSS {}; controllers' requests {:.1}/s",
        cp,
        cp / (2.0 * wall.as_secs_f64()) * 100.0,
        after
            .iter()
            .map(|(k, v)| format!("{k} {:.1} s", v - cpu[k]))
            .collect::<Vec<_>>()
            .join(", "),
        client.as_secs_f64(),
        peak.iter()
            .map(|(k, v)| format!("{k} {} MiB", v / 1024))
            .collect::<Vec<_>>()
            .join(", "),
        kcm as f64 / wall.as_secs_f64()
    );
    for (user, count) in busiest.iter().take(3) {
        println!(
            "      {:<60} {:>6} requests, {:>5.1}/s",
            user,
            count,
            **count as f64 / wall.as_secs_f64()
        );
    }
}

fn bootlet_storm(j: &Joiners, n: usize, in_flight: usize, tag: &str) -> (Vec<Duration>, usize) {
    use bootlet::settings::Options;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let gate = Arc::new(tokio::sync::Semaphore::new(in_flight.max(1)));
    let bootstrap = j.bootstrap[&Method::Bootlet].clone();
    let roots = j.roots.path().join(format!("storm-{tag}"));
    rt.block_on(async {
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let o = Options {
                    root: Some(roots.join(i.to_string())),
                    node_name: Some(format!("real-bl-{tag}-{i}")),
                    bootstrap_kubeconfig: Some(bootstrap.clone()),
                    skip_phases: Some(vec!["serving-csr".into()]),
                    ..Default::default()
                };
                let gate = gate.clone();
                tokio::spawn(async move {
                    let _turn = gate.acquire_owned().await.expect("open");
                    crate::try_join(o).await
                })
            })
            .collect();
        let (mut times, mut failed) = (Vec::new(), 0);
        for t in tasks {
            match t.await.unwrap() {
                Ok(d) => times.push(d),
                Err(e) => {
                    if failed == 0 {
                        println!("storm: a join failed: {e}");
                    }
                    failed += 1;
                }
            }
        }
        (times, failed)
    })
}

/// The release binary, built if it is missing or older than the sources (`cargo bench` builds
/// the library, not the binary).
fn release_bootlet() -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Without the variables cargo set for this bench: build scripts that watch them would see a
    // change, and the next `cargo bench` would rebuild everything.
    let keep = [
        "PATH",
        "HOME",
        "CARGO_HOME",
        "RUSTUP_HOME",
        "RUSTUP_TOOLCHAIN",
    ];
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--bin", "bootlet", "--quiet"])
        .current_dir(repo)
        .env_clear()
        .envs(std::env::vars().filter(|(k, _)| keep.contains(&k.as_str())))
        .status()
        .unwrap();
    assert!(status.success(), "cargo build --release failed");
    repo.join("target/release/bootlet")
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The whole `real` benchmark.
pub fn run() {
    let n = env_usize("BOOTLET_BENCH_N", 60).max(50);
    let storm_n = env_usize("BOOTLET_REAL_STORM_N", 500);
    let in_flight = env_usize("BOOTLET_REAL_STORM_IN_FLIGHT", 50);
    let big = env_usize("BOOTLET_REAL_BIG_STORM_N", 0);
    let bootlet = release_bootlet();
    let started = Instant::now();
    let plane = match Plane::start() {
        Ok(p) => p,
        Err(e) => {
            println!("real: the real control plane did not start: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "real control plane (tests/kube/up, kubeadm-initialized) at {} in {:.1} s",
        plane.server,
        started.elapsed().as_secs_f64()
    );
    let j = Joiners {
        bootlet,
        kubelet: plane.bin.join("kubelet"),
        kubecp: plane.bin.join("kubecp"),
        kubelet_config: plane.kubelet_config(),
        bootstrap: Method::ALL
            .iter()
            .map(|m| (*m, plane.bootstrap(*m)))
            .collect(),
        roots: scratch(),
    };
    let csrs = watch_csrs(&plane.admin());
    // Warm the page cache and the API server's caches: not measured.
    for i in 0..3 {
        for m in Method::ALL {
            j.join(m, 100_000 + i)
                .unwrap_or_else(|e| panic!("warm-up {m:?}: {e}"));
        }
    }
    let mut samples: BTreeMap<Method, Vec<Sample>> = BTreeMap::new();
    let mut inside = Vec::new();
    for i in 0..n {
        for m in Method::ALL {
            settle();
            let s = if m == Method::Peer {
                let node = format!("{}{i}", m.prefix());
                let (s, t) = j
                    .peer(&j.roots.path().join(&node), &node)
                    .unwrap_or_else(|e| panic!("peer {i}: {e}"));
                inside.push(t);
                s
            } else {
                j.join(m, i)
                    .unwrap_or_else(|e| panic!("{m:?} join {i}: {e}"))
            };
            samples.entry(m).or_default().push(s);
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    println!("\nclient-only joins, interleaved, n={n} each (wall time to verified credentials):");
    let mut medians = BTreeMap::new();
    for m in Method::ALL {
        let walls: Vec<Duration> = samples[&m].iter().map(|s| s.wall).collect();
        medians.insert(m, report(m.label(), &walls));
    }
    report("Go peer, bootstrap alone", &inside);
    let (a, b) = (medians[&Method::Bootlet], medians[&Method::Kubelet]);
    println!(
        "bootlet / kubelet {:.2}, bootlet / Go peer process {:.2}, bootlet / Go peer bootstrap alone {:.2}",
        ms(a) / ms(b),
        ms(a) / ms(medians[&Method::Peer]),
        ms(a) / ms(median(inside.clone())),
    );
    let serving: Vec<Duration> = (0..20)
        .map(|i| {
            settle();
            let node = format!("real-bs-{i}");
            j.bootlet_with_serving(&plane.admin(), &j.roots.path().join(&node), &node)
                .unwrap_or_else(|e| panic!("one-shot join {i}: {e}"))
                .wall
        })
        .collect();
    report("bootlet join, serving included", &serving);
    println!(
        "  (one-shot: --admin-kubeconfig --approve-serving; the kubelet's bootstrap gets no serving certificate: it asks for one only once its Node is registered, and csrapproving never approves kubelet-serving CSRs)"
    );
    println!("\nwhere the time goes (medians; CSR events as a watcher saw them):");
    let log = csrs.lock().unwrap().clone();
    for m in [Method::Bootlet, Method::Kubelet, Method::Peer] {
        let splits: Vec<(Split, Sample)> = samples[&m]
            .iter()
            .filter_map(|s| Some((split(s, csr_of(&log, m, s)?)?, *s)))
            .collect();
        let med = |f: &dyn Fn(&Split) -> Duration| median_of(splits.iter().map(|(x, _)| f(x)));
        let wall = median_of(splits.iter().map(|(_, s)| s.wall));
        let cpu = median_of(splits.iter().map(|(_, s)| s.cpu));
        let cp = med(&|x| x.approval + x.signing);
        let own = median_of(
            splits
                .iter()
                .map(|(x, s)| s.wall - (x.approval + x.signing)),
        );
        println!(
            "{:<32} ({} matched) before the CSR {:.1} ms, approval {:.1} ms, signing {:.1} ms, after {:.1} ms; its own share {:.1} ms ({:.0} % of {:.1} ms), its CPU {:.1} ms; the control plane's {:.1} ms",
            m.label(),
            splits.len(),
            ms(med(&|x| x.before)),
            ms(med(&|x| x.approval)),
            ms(med(&|x| x.signing)),
            ms(med(&|x| x.after)),
            ms(own),
            ms(own) / ms(wall) * 100.0,
            ms(wall),
            ms(cpu),
            ms(cp),
        );
    }
    let idle = idle_cpu_rates(&plane);
    println!(
        "\nwhat a join costs the control plane (batches of 30 of one method, audit log and /proc, less the idle CPU: {}):",
        idle.iter()
            .map(|(k, v)| format!("{k} {:.1} ms/s", v * 1e3))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for m in Method::ALL {
        batch(&plane, &j, m, (200_000, 30), &idle);
    }
    println!();
    storm(&plane, &j, Method::Bootlet, storm_n, in_flight, "a");
    storm(&plane, &j, Method::Peer, storm_n, in_flight, "a");
    if big > 0 {
        storm(&plane, &j, Method::Bootlet, big, in_flight, "b");
        storm(&plane, &j, Method::Peer, big, in_flight, "b");
    }
    println!("control plane memory at the end: {:?} KiB", plane.rss_kib());
    println!(
        "\nreal: bootlet {:.1} ms, kubelet {:.1} ms, ratio {:.2}",
        ms(a),
        ms(b),
        ms(a) / ms(b)
    );
}
