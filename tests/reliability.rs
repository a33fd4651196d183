//! Reliability: SIGKILL at random instants then rerun; joins through a flaky API; failures that
//! must not be retried.
//!
//! `cargo test` runs a short version of the crash harness; `BOOTLET_LONG=1 cargo test --release
//! --test reliability` runs the long one (250 kills).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bootlet::sandbox::SandboxOptions;
use common::*;

fn long_mode() -> bool {
    std::env::var_os("BOOTLET_LONG").is_some()
}

/// xorshift, seeded per test so a failure can be replayed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Checks every file at a target path is whole: it parses as what it is. Temporary files (never
/// at a target path) are skipped.
fn partial_files(root: &Path) -> Vec<String> {
    let mut bad = Vec::new();
    for f in files_under(root) {
        if f.contains(".bootlet-tmp-") {
            continue;
        }
        let p = root.join(&f);
        let Ok(bytes) = std::fs::read(&p) else {
            continue;
        }; // vanished or a dangling link mid-swap would show here
        let text = String::from_utf8_lossy(&bytes);
        let ok = if f.ends_with(".conf") || f.ends_with("/kubeconfig") {
            bootlet::kubeconfig::parse(&text, p.parent().unwrap(), "check").is_ok()
        } else if f.ends_with(".crt") || f.ends_with(".pem") {
            bootlet::pki::parse_certs_pem(&bytes, "check").is_ok()
                && (!f.ends_with(".pem") || bootlet::pki::keys::private_key_block(&text).is_some())
        } else if f.ends_with(".key") {
            bootlet::pki::keys::PrivateKey::from_pem(&text, "check").is_ok()
        } else if f.ends_with("journal.toml") {
            bootlet::engine::journal::Journal::parse(&text, "check").is_ok()
        } else if f.ends_with("cluster.toml") {
            toml::from_str::<toml::Table>(&text).is_ok_and(|t| t.contains_key("ca"))
        } else if f.ends_with("bootstrap-token") {
            bootlet::token::BootstrapToken::parse(&text).is_ok()
        } else {
            true
        };
        if !ok {
            bad.push(f);
        }
    }
    for link in [
        "var/lib/kubelet/pki/kubelet-client-current.pem",
        "var/lib/kubelet/pki/kubelet-server-current.pem",
    ] {
        let p = root.join(link);
        if p.symlink_metadata().is_ok() && std::fs::metadata(&p).is_err() {
            bad.push(format!("{link} dangles"));
        }
    }
    bad
}

/// Keys, kubeconfigs and the token file are 0600, their directories 0700.
pub fn assert_private_modes(root: &Path) {
    for f in files_under(root) {
        let p = root.join(&f);
        let private = f.ends_with(".key")
            || f.ends_with(".conf")
            || f.ends_with("bootstrap-token")
            || f.contains("kubelet-client-2")
            || f.contains("kubelet-server-2")
            || f.ends_with("/kubeconfig");
        if private && !p.symlink_metadata().unwrap().file_type().is_symlink() {
            assert_eq!(mode(&p), 0o600, "{f}");
            assert_eq!(mode(p.parent().unwrap()), 0o700, "directory of {f}");
        }
    }
}

/// The final state of a joined node: key matches certificate, chains to the CA, the CSR counts.
fn assert_joined(sb: &TestSandbox, root: &Path, node: &str) {
    for pem in ["kubelet-client-current.pem", "kubelet-server-current.pem"] {
        let p = root.join("var/lib/kubelet/pki").join(pem);
        let text = std::fs::read_to_string(&p).unwrap_or_else(|_| panic!("{node}: no {pem}"));
        let key = bootlet::pki::keys::PrivateKey::from_pem(
            &bootlet::pki::keys::private_key_block(&text).unwrap(),
            pem,
        )
        .unwrap();
        let info = cert_info(&p);
        assert_eq!(
            info.spki,
            key.spki_der(),
            "{node}: {pem} key matches certificate"
        );
        let der = bootlet::pki::parse_certs_pem(text.as_bytes(), "c").unwrap();
        assert!(
            bootlet::pki::cert::signed_by(&der[0], sb.sb().ca().cert_der()),
            "{node}: {pem} chains to the CA"
        );
    }
    assert_private_modes(root);
    let (mut client, mut serving) = (0, 0);
    for csr in sb.sb().list("certificatesigningrequests", "") {
        use base64::Engine;
        let pem = base64::engine::general_purpose::STANDARD
            .decode(csr["spec"]["request"].as_str().unwrap())
            .unwrap();
        if bootlet::pki::csr::parse_pem(&pem).unwrap().cn() == format!("system:node:{node}") {
            match csr["spec"]["signerName"].as_str().unwrap() {
                "kubernetes.io/kubelet-serving" => serving += 1,
                _ => client += 1,
            }
        }
    }
    assert!(
        client <= 1 && serving <= 1,
        "{node}: {client} client and {serving} serving CSRs"
    );
}

fn join_args<'a>(admin: &'a Path, root: &'a Path, node: &'a str) -> Vec<&'a str> {
    vec![
        "join",
        "--admin-kubeconfig",
        s(admin),
        "--root",
        s(root),
        "--node-name",
        node,
        "--approval-timeout",
        "30s",
    ]
}

#[test]
fn sigkill_at_random_instants_then_rerun_always_ends_with_a_consistent_node() {
    let kills = std::env::var("BOOTLET_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if long_mode() { 250 } else { 24 });
    let sb = TestSandbox::with(SandboxOptions {
        latency_ms: (2, 12),
        auto_approve_serving: true,
        ..Default::default()
    });
    let admin = sb.admin_conf();
    let work = tempfile::tempdir().unwrap();
    // How long an undisturbed join takes here: kills land anywhere inside that span. The fastest
    // of three, since a first, cold run (binary not yet in the page cache, a busy CI machine) can
    // take several times as long and would put most kills after the run had finished.
    let mut fastest = Duration::MAX;
    for w in 0..3 {
        let warm = work.path().join(format!("warm-{w}"));
        let t = Instant::now();
        bootlet(&join_args(&admin, &warm, &format!("warm-{w}"))).ok();
        fastest = fastest.min(t.elapsed());
    }
    let span = fastest.as_micros() as u64 * 12 / 10 + 1;
    let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ kills as u64);
    let mut killed_mid_run = 0;
    for i in 0..kills {
        let node = format!("crash-{i}");
        let root: PathBuf = work.path().join(&node);
        let args = join_args(&admin, &root, &node);
        let mut child = std::process::Command::new(bin())
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Watch the target paths while the run goes on and is killed.
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = {
            let stop = stop.clone();
            let root = root.clone();
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    seen.extend(partial_files(&root));
                    std::thread::sleep(Duration::from_micros(300));
                }
                seen
            })
        };
        std::thread::sleep(Duration::from_micros(rng.next() % span));
        if child.try_wait().unwrap().is_none() {
            killed_mid_run += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
        stop.store(true, Ordering::Relaxed);
        let seen = watcher.join().unwrap();
        assert!(
            seen.is_empty(),
            "{node}: a target path held a partial file: {seen:?}"
        );
        assert!(
            partial_files(&root).is_empty(),
            "{node}: partial files after the kill"
        );
        let rerun = bootlet(&args);
        assert_eq!(
            rerun.code, 0,
            "{node}: the rerun after a kill failed:\n{}\n{}",
            rerun.stdout, rerun.stderr
        );
        assert_joined(&sb, &root, &node);
    }
    assert!(
        killed_mid_run * 3 >= kills,
        "a good share of kills must land mid-run ({killed_mid_run} of {kills})"
    );
    eprintln!("{kills} kills, {killed_mid_run} mid-run, span {span} µs");
}

#[test]
fn fifty_joins_through_a_flaky_api_all_finish() {
    let joins = 50;
    let sb = Arc::new(TestSandbox::with(SandboxOptions {
        fault_rate: 0.3,
        latency_ms: (50, 200),
        drop_watch_after: Some(Duration::from_secs(2)),
        auto_approve_serving: true,
        ..Default::default()
    }));
    let token = "flakyt.0123456789abcdef";
    sb.new_token(token);
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = sb.bootstrap_kubeconfig(dir.path(), token);
    let bound = Duration::from_secs(60);
    let started = Instant::now();
    let results: Vec<(usize, i32, Duration, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..10)
            .map(|worker| {
                let bootstrap = bootstrap.clone();
                let dir = dir.path().to_path_buf();
                scope.spawn(move || {
                    let mut out = Vec::new();
                    for i in (worker..joins).step_by(10) {
                        let root = dir.join(format!("n{i}"));
                        let node = format!("flaky-{i}");
                        let t = Instant::now();
                        let run = bootstrap_join(
                            s(&root),
                            &node,
                            &bootstrap,
                            &["--approval-timeout", "60s", "--api-timeout", "60s"],
                        );
                        out.push((i, run.code, t.elapsed(), run.stderr));
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let failed: Vec<String> = results
        .iter()
        .filter(|r| r.1 != 0)
        .map(|r| {
            format!(
                "join {}: exit {}: {}",
                r.0,
                r.1,
                r.3.lines().last().unwrap_or("")
            )
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {joins} joins failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
    let mut times: Vec<Duration> = results.iter().map(|r| r.2).collect();
    times.sort();
    let slowest = *times.last().unwrap();
    assert!(
        slowest < bound,
        "a join took {slowest:?}, over the {bound:?} bound"
    );
    for i in 0..joins {
        assert_joined(
            &sb,
            &dir.path().join(format!("n{i}")),
            &format!("flaky-{i}"),
        );
    }
    let faults = sb.requests_by("system:");
    eprintln!(
        "{joins}/{joins} joins through 30% faults: median {:?}, slowest {slowest:?}, all in {:?}; {faults} node-side requests",
        times[joins / 2],
        started.elapsed()
    );
}

#[test]
fn unauthorized_and_forbidden_are_not_retried() {
    // 401: an unknown token. One create, then a one-line error, fast.
    let sb = TestSandbox::start();
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = sb.bootstrap_kubeconfig(dir.path(), "unknwn.0123456789abcdef");
    let started = Instant::now();
    let run = bootstrap_join(s(&dir.path().join("a")), "a", &bootstrap, &[]);
    run.fails_with(6, "401 Unauthorized");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        sb.sb().counters()["unauthenticated"]["create"],
        1,
        "no retry after 401"
    );
    // 403: a valid token without the bootstrapper bindings.
    let bare = TestSandbox::configured(|o| o.bare = true);
    bare.add_token("bareok.0123456789abcdef", None, &["authentication"]);
    let bootstrap = bare.bootstrap_kubeconfig(dir.path(), "bareok.0123456789abcdef");
    let started = Instant::now();
    let run = bootstrap_join(s(&dir.path().join("b")), "b", &bootstrap, &[]);
    run.fails_with(6, "403");
    assert!(
        run.error_line().contains("bootlet phase secret"),
        "names the fix: {}",
        run.error_line()
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        bare.sb().counters()["system:bootstrap:bareok"]["create"],
        1,
        "no retry after 403"
    );
}
