//! Re-runs trust only state bootlet can show it wrote (issue 9): a root joined to another cluster,
//! planted state files, symlinked directories, the lock, expired tokens, tokens in the wrong flag,
//! core dumps, and installed credentials whose modes were widened. Each attack asserts the exit
//! code, the one-line message, what did not happen (no request, no Secret, nothing outside the
//! root), and that a clean rerun after following the message's advice finishes.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

fn one_error_line(run: &Run) -> String {
    let lines = run.stderr_lines(|l| l.starts_with("error: "));
    assert_eq!(lines.len(), 1, "one error line\n{}", run.stderr);
    lines[0].to_string()
}

/// Every request the sandbox has counted, from anyone.
fn all_requests(sb: &TestSandbox) -> u64 {
    sb.requests_by("")
}

fn token_secrets(sb: &TestSandbox) -> Vec<String> {
    sb.sb()
        .list("secrets", "kube-system")
        .into_iter()
        .filter_map(|s| s["metadata"]["name"].as_str().map(str::to_string))
        .filter(|n| n.starts_with("bootstrap-token-"))
        .collect()
}

/// Joins `root` to `sb` with a bootstrap kubeconfig for `token`.
fn join_with_token(sb: &TestSandbox, root: &Path, token: &str, node: &str) -> Run {
    let (_dir, bootstrap, _) = sb.token_node(token);
    let keep = root
        .parent()
        .unwrap()
        .join(format!("{node}-bootstrap.conf"));
    std::fs::copy(&bootstrap, &keep).unwrap();
    bootstrap_join(s(root), node, &keep, &["--approval-timeout", "20s"])
}

/// A snapshot of every path under `dir` with its size, mode and mtime.
fn snapshot(dir: &Path) -> Vec<(String, u64, u32, i64)> {
    let mut out: Vec<_> = files_under(dir)
        .into_iter()
        .map(|f| {
            let m = std::fs::symlink_metadata(dir.join(&f)).unwrap();
            (
                f,
                m.len(),
                m.mode(),
                m.mtime_nsec() + m.mtime() * 1_000_000_000,
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_root_joined_to_another_cluster_is_refused_before_any_request() {
    let a = TestSandbox::auto_serving();
    let b = TestSandbox::auto_serving();
    let (work, root) = work_root();
    join_with_token(&a, &root, "aaaaaa.0123456789abcdef", "edge-1").ok();
    let conf = root.join("etc/kubernetes/kubelet.conf");
    let before = snapshot(&root);
    let conf_before = std::fs::read(&conf).unwrap();

    b.add_token(
        "bbbbbb.0123456789abcdef",
        None,
        &["authentication", "signing"],
    );
    let token_file = work.path().join("b.token");
    std::fs::write(&token_file, "bbbbbb.0123456789abcdef\n").unwrap();
    let requests_before = all_requests(&b);
    let secrets_before = token_secrets(&b);
    let to_b = |root: &Path| {
        join_node(
            s(root),
            "edge-1",
            &[
                &b.endpoint(),
                "--token-file",
                s(&token_file),
                "--discovery-token-ca-cert-hash",
                &b.pin(),
                "--approval-timeout",
                "20s",
            ],
        )
    };
    let run = to_b(&root);
    run.fails_with(9, "this root is joined to the cluster at");
    let line = one_error_line(&run);
    for needle in [
        a.url(),
        a.pin(),
        b.url(),
        b.pin(),
        "bootlet reset --root".to_string(),
        "another --root".into(),
    ] {
        assert!(line.contains(&needle), "{needle:?} in {line}");
    }
    assert!(!run.stdout.contains("already done"), "{}", run.stdout);
    assert!(!run.all().contains("has joined"));
    assert_eq!(
        all_requests(&b),
        requests_before,
        "no request reached cluster B"
    );
    assert_eq!(
        std::fs::read(&conf).unwrap(),
        conf_before,
        "kubelet.conf still points at A"
    );
    assert_eq!(snapshot(&root), before, "nothing under the root changed");

    // The one-shot admin path is refused the same way, and creates no token Secret in B.
    let run = join_node(
        s(&root),
        "edge-1",
        &["--admin-kubeconfig", s(&b.admin_conf())],
    );
    run.fails_with(9, "this root is joined to the cluster at");
    assert_eq!(
        token_secrets(&b),
        secrets_before,
        "no token Secret was created in B"
    );

    // Without discovery input the joined root is simply done, as before.
    let again = join_node(s(&root), "edge-1", &[]);
    again.ok();
    assert!(again.stdout.contains("already done"), "{}", again.stdout);

    // The advice: another --root joins B.
    let other = work.path().join("node-b");
    to_b(&other).ok();
    let who = whoami(&other.join("etc/kubernetes/kubelet.conf"), work.path());
    assert_eq!(who.stdout, "system:node:edge-1", "{}", who.stderr);
}

fn plant(root: &Path, rel: &str, content: &[u8], mode: u32) -> PathBuf {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    for d in p.ancestors().skip(1).take_while(|d| *d != root) {
        std::fs::set_permissions(d, PermissionsExt::from_mode(0o700)).unwrap();
    }
    std::fs::write(&p, content).unwrap();
    std::fs::set_permissions(&p, PermissionsExt::from_mode(mode)).unwrap();
    p
}

#[test]
fn a_planted_token_file_is_refused_and_never_registered() {
    let sb = TestSandbox::auto_serving();
    let (_work, root) = work_root();
    let planted = "plnt01.0123456789abcdef";
    for mode in [0o644, 0o600] {
        let p = plant(
            &root,
            "var/lib/bootlet/bootstrap-token",
            format!("{planted}\n").as_bytes(),
            mode,
        );
        let run = join_node(
            s(&root),
            "edge-2",
            &["--admin-kubeconfig", s(&sb.admin_conf())],
        );
        run.fails_with(9, "planted or changed outside bootlet");
        let line = one_error_line(&run);
        assert!(line.contains(&p.display().to_string()), "{line}");
        assert!(line.contains("remove it to start over"), "{line}");
        if mode == 0o644 {
            assert!(line.contains("mode 0644"), "{line}");
        } else {
            assert!(line.contains("the journal does not record it"), "{line}");
        }
        assert!(
            !token_secrets(&sb).contains(&"bootstrap-token-plnt01".to_string()),
            "the planted token was not registered"
        );
        assert!(!root.join("etc/kubernetes/kubelet.conf").exists());
    }
    std::fs::remove_file(root.join("var/lib/bootlet/bootstrap-token")).unwrap();
    sb.approve_serving_in_background();
    join_node(
        s(&root),
        "edge-2",
        &["--admin-kubeconfig", s(&sb.admin_conf())],
    )
    .ok();
    assert!(!token_secrets(&sb).contains(&"bootstrap-token-plnt01".to_string()));
}

#[test]
fn a_planted_staging_key_is_refused_and_the_certificate_carries_bootlets_own_key() {
    let sb = TestSandbox::auto_serving();
    let (work, root) = work_root();
    let key = work.path().join("planted.key");
    let made = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ])
        .arg(&key)
        .output()
        .unwrap();
    assert!(made.status.success());
    let planted_pem = std::fs::read_to_string(&key).unwrap();
    remember_secrets(&planted_pem);
    let planted_spki = bootlet::pki::keys::PrivateKey::from_pem(&planted_pem, "planted")
        .unwrap()
        .spki_der();
    plant(
        &root,
        "var/lib/bootlet/staging/client.key",
        planted_pem.as_bytes(),
        0o644,
    );
    let run = join_with_token(&sb, &root, "keyatk.0123456789abcdef", "edge-3");
    run.fails_with(9, "planted or changed outside bootlet");
    assert!(
        one_error_line(&run).contains("staging/client.key"),
        "{}",
        run.stderr
    );
    assert!(
        sb.csrs_of("system:bootstrap:keyatk").is_empty(),
        "no CSR was sent"
    );
    // Private but unrecorded: still not bootlet's.
    std::fs::set_permissions(
        root.join("var/lib/bootlet/staging/client.key"),
        PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    join_with_token(&sb, &root, "keyatk.0123456789abcdef", "edge-3")
        .fails_with(9, "the journal does not record it");
    assert!(
        sb.csrs_of("system:bootstrap:keyatk").is_empty(),
        "no CSR was sent"
    );

    std::fs::remove_file(root.join("var/lib/bootlet/staging/client.key")).unwrap();
    join_with_token(&sb, &root, "keyatk.0123456789abcdef", "edge-3").ok();
    let current = root.join("var/lib/kubelet/pki/kubelet-client-current.pem");
    assert_ne!(
        cert_info(&current).spki,
        planted_spki,
        "the issued certificate is for bootlet's key"
    );
    assert!(openssl_verify(&sb.ca_crt(), &current));
}

#[test]
fn symlinked_directories_are_refused_and_nothing_is_written_outside_the_root() {
    let sb = TestSandbox::auto_serving();
    for (i, (link, absolute)) in [
        ("var/lib/kubelet/pki", false),
        ("etc/kubernetes", false),
        ("etc", true),
        ("var/lib/bootlet", false),
    ]
    .into_iter()
    .enumerate()
    {
        let work = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = work.path().join("node");
        let at = root.join(link);
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        if absolute {
            std::os::unix::fs::symlink(outside.path(), &at).unwrap();
        } else {
            // A relative link climbing out of the root.
            let depth = at.parent().unwrap().components().count() - 1;
            let up = "../".repeat(depth);
            let rel = format!(
                "{up}{}",
                outside.path().strip_prefix("/").unwrap().display()
            );
            std::os::unix::fs::symlink(&rel, &at).unwrap();
            assert!(at.is_dir(), "{rel} resolves");
        }
        let token = &format!("link{i:02}.0123456789abcdef");
        let user = format!("system:bootstrap:link{i:02}");
        let run = join_with_token(&sb, &root, token, "edge-4");
        run.fails_with(9, &format!("/{link} is a symbolic link"));
        let line = one_error_line(&run);
        assert!(
            line.contains("replace the link with a real directory"),
            "{line}"
        );
        assert!(
            files_under(outside.path()).is_empty(),
            "{link}: nothing outside the root"
        );
        assert!(sb.csrs_of(&user).is_empty(), "{link}: no CSR sent");
        // The same refusal from plan, which only looks.
        bootlet(&["plan", "--root", s(&root), "--node-name", "edge-4"])
            .fails_with(9, "is a symbolic link");
        std::fs::remove_file(&at).unwrap();
        join_with_token(&sb, &root, token, "edge-4").ok();
        assert!(files_under(outside.path()).is_empty());
        assert!(root.join("etc/kubernetes/kubelet.conf").is_file());
    }
}

/// Where a run on `root` (kubelet layout) keeps its lock.
fn lock_path(root: &Path) -> PathBuf {
    let state = root.join("var/lib/bootlet");
    if bootlet::files::confined::euid() == 0 {
        bootlet::engine::lock::root_lock_path(&state)
    } else {
        state.join("lock")
    }
}

#[test]
fn the_lock_is_private_not_followed_sanitized_and_shared_across_tmpdirs() {
    let (work, root) = work_root();
    std::fs::create_dir_all(&root).unwrap();
    let lock = lock_path(&root);
    if bootlet::files::confined::euid() == 0 {
        // Only root may create files where root's locks live.
        phase_node("token", s(&root), "n1", &[]).ok();
        let dir = std::fs::metadata(lock.parent().unwrap()).unwrap();
        assert_eq!((dir.uid(), dir.mode() & 0o7777), (0, 0o700));
    }
    // Released and removed after the run; nothing in the run's TMPDIR.
    let tmp = tempfile::tempdir().unwrap();
    bootlet_env(
        &["phase", "token", "--root", s(&root), "--node-name", "n1"],
        &[("TMPDIR", s(tmp.path()))],
    )
    .ok();
    assert!(!lock.exists(), "the lock file is removed when the run ends");
    assert!(files_under(tmp.path()).is_empty(), "nothing left in TMPDIR");

    // A link planted at the lock path is not followed, and the file it names is untouched.
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    let victim = work.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    std::os::unix::fs::symlink(&victim, &lock).unwrap();
    let run = phase_node("token", s(&root), "n1", &[]);
    run.fails_with(9, "is a symbolic link, not bootlet's lock");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    std::fs::remove_file(&lock).unwrap();

    // A holder's text is printed without its control characters, whatever the TMPDIR.
    std::fs::write(&lock, "pid 7, \x1b[31mred\x1b[0m \x07bell").unwrap();
    let held = std::fs::File::open(&lock).unwrap();
    held.try_lock().unwrap();
    for tmpdir in ["/tmp", s(tmp.path())] {
        let run = bootlet_env(
            &["phase", "token", "--root", s(&root), "--node-name", "n1"],
            &[("TMPDIR", tmpdir)],
        );
        run.fails_with(
            9,
            "another bootlet run is working on this root (pid 7, ?[31mred?[0m ?bell",
        );
        assert!(!run.stderr.contains('\x1b') && !run.stderr.contains('\x07'));
    }
    drop(held);
    std::fs::remove_file(&lock).unwrap();
    phase_node("token", s(&root), "n1", &[]).ok();
}

#[test]
fn an_expired_stored_token_is_never_reused_or_registered_and_new_token_forces_one() {
    let sb = TestSandbox::start();
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("admin");
    let stored = root.join("var/lib/bootlet/bootstrap-token");
    let id_of = |p: &Path| std::fs::read_to_string(p).unwrap()[..6].to_string();
    phase_node("token", s(&root), "n1", &["--token-ttl", "1s"]).ok();
    let old = id_of(&stored);
    std::thread::sleep(Duration::from_millis(2100));
    let run = phase_node(
        "secret",
        s(&root),
        "n1",
        &["--admin-kubeconfig", s(&sb.admin_conf())],
    );
    run.fails_with(10, "phase token produces it");
    assert!(
        !token_secrets(&sb).contains(&format!("bootstrap-token-{old}")),
        "not registered"
    );
    let plan = bootlet(&["plan", "--root", s(&root), "--node-name", "n1"]);
    assert_has(
        &plan.stdout,
        &format!("the stored token {old}.<redacted> expired at"),
    );

    let run = phase_node("token", s(&root), "n1", &[]);
    run.ok();
    let fresh = id_of(&stored);
    assert_ne!(fresh, old, "a fresh token replaced the expired one");
    phase_node(
        "secret",
        s(&root),
        "n1",
        &["--admin-kubeconfig", s(&sb.admin_conf())],
    )
    .ok();
    let secret = sb.kubectl(&[
        "-n",
        "kube-system",
        "get",
        "secret",
        &format!("bootstrap-token-{fresh}"),
        "-o",
        "jsonpath={.data.expiration}",
    ]);
    use base64::Engine;
    let exp = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(secret.stdout.trim())
            .unwrap(),
    )
    .unwrap();
    let journal = std::fs::read_to_string(root.join("var/lib/bootlet/journal.toml")).unwrap();
    assert!(
        journal.contains(&format!("expires_at = \"{exp}\"")),
        "the Secret carries the recorded expiry {exp}\n{journal}"
    );

    // --new-token replaces even a valid stored token.
    phase_node("token", s(&root), "n1", &["--new-token"]).ok();
    assert_ne!(id_of(&stored), fresh);
    phase_node(
        "token",
        s(&root),
        "n1",
        &["--new-token", "--token", "abcdef.0123456789abcdef"],
    )
    .fails_with(2, "--new-token generates a token");
}

#[test]
fn a_token_in_another_flag_is_refused_before_any_network_use_and_never_echoed() {
    let sb = TestSandbox::auto_serving();
    let (_work, root) = work_root();
    let secret = "s3cr3t0123456789";
    let token = format!("abcdef.{secret}");
    let before = all_requests(&sb);
    for args in [
        vec![
            "join",
            token.as_str(),
            "--root",
            s(&root),
            "--token",
            "abcdef.0123456789abcdef",
        ],
        vec![
            "join",
            &sb.endpoint(),
            "--root",
            s(&root),
            "--token",
            "abcdef.0123456789abcdef",
            "--discovery-token-ca-cert-hash",
            token.as_str(),
        ],
        vec![
            "join",
            "--root",
            s(&root),
            "--node-name",
            token.as_str(),
            "--admin-kubeconfig",
            s(&sb.admin_conf()),
        ],
    ] {
        let run = bootlet(&args);
        run.fails_with(2, "shaped like a bootstrap token");
        assert!(!run.all().contains(secret), "{}", run.all());
    }
    // Wrong enum value: clap quotes the value; the secret half is redacted.
    let run = bootlet(&["join", "--root", s(&root), "--layout", token.as_str()]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("abcdef.<redacted>"), "{}", run.stderr);
    assert!(!run.all().contains(secret));
    assert_eq!(all_requests(&sb), before, "nothing was sent");
    assert!(!root.exists(), "nothing was written");
}

#[test]
fn a_waiting_join_cannot_be_dumped() {
    // As another user, so that the kernel's ownership of /proc/<pid> shows the dumpable flag.
    if bootlet::files::confined::euid() != 0
        || std::process::Command::new("setpriv")
            .arg("--help")
            .output()
            .is_err()
    {
        eprintln!("skipped: needs root and setpriv to run bootlet as another user");
        return;
    }
    let sb = TestSandbox::start();
    let work = tempfile::tempdir().unwrap();
    let (_d, bootstrap, _) = sb.token_node("dumpme.0123456789abcdef");
    let conf = work.path().join("bootstrap.conf");
    std::fs::copy(&bootstrap, &conf).unwrap();
    let root = work.path().join("node");
    std::fs::create_dir_all(&root).unwrap();
    for p in [work.path(), &root, &conf] {
        std::os::unix::fs::chown(p, Some(65534), Some(65534)).unwrap();
    }
    let mut child = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(bin())
        .args([
            "join",
            "--root",
            s(&root),
            "--node-name",
            "dump-1",
            "--bootstrap-kubeconfig",
            s(&conf),
            "--approval-timeout",
            "30s",
        ])
        .env("HOME", work.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Waiting for the serving CSR: the token and both keys are in memory.
    eventually(20, || {
        (!sb.csrs_of("system:node:dump-1").is_empty()).then_some(())
    });
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap()
        .to_string();
    let status_owner = std::fs::metadata(format!("/proc/{pid}/status"))
        .unwrap()
        .uid();
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    leak_scan(
        &Run {
            code: -1,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        },
        &["--root", s(&root)],
        &[],
    );
    assert_eq!(
        core.split_whitespace().filter(|w| *w == "0").count(),
        2,
        "{core}"
    );
    assert_eq!(
        status_owner, 0,
        "a non-dumpable process's /proc entries belong to root, not to uid 65534"
    );
}

#[test]
fn widened_modes_of_installed_credentials_are_repaired_and_foreign_owners_refused() {
    let sb = TestSandbox::auto_serving();
    let (_work, root) = work_root();
    join_with_token(&sb, &root, "modeok.0123456789abcdef", "edge-5").ok();
    let conf = root.join("etc/kubernetes/kubelet.conf");
    let client =
        std::fs::canonicalize(root.join("var/lib/kubelet/pki/kubelet-client-current.pem")).unwrap();
    for p in [&conf, &client] {
        std::fs::set_permissions(p, PermissionsExt::from_mode(0o644)).unwrap();
    }
    let inode = std::fs::metadata(&conf).unwrap().ino();
    let plan = bootlet(&["plan", "--root", s(&root), "--node-name", "edge-5"]);
    assert_has(
        &plan.stdout,
        "/etc/kubernetes/kubelet.conf has mode 0644, wider than 0600",
    );
    let run = join_node(s(&root), "edge-5", &[]);
    run.ok();
    assert_has(
        &run.stdout,
        "Repaired the mode of /etc/kubernetes/kubelet.conf: 0644 -> 0600",
    );
    assert_has(
        &run.stdout,
        "Repaired the mode of /var/lib/kubelet/pki/kubelet-client-",
    );
    assert_eq!((mode(&conf), mode(&client)), (0o600, 0o600));
    assert_eq!(
        std::fs::metadata(&conf).unwrap().ino(),
        inode,
        "repaired in place, not rewritten"
    );
    let again = join_node(s(&root), "edge-5", &[]);
    again.ok();
    assert!(!again.stdout.contains("Repaired"), "{}", again.stdout);

    if bootlet::files::confined::euid() == 0 {
        std::os::unix::fs::chown(&conf, Some(65534), None).unwrap();
        let run = join_node(s(&root), "edge-5", &[]);
        run.fails_with(9, "is owned by uid 65534, not by the running user");
        assert_lacks(&run.stdout, "already done: credentials installed");
        std::os::unix::fs::chown(&conf, Some(0), None).unwrap();
        join_node(s(&root), "edge-5", &[]).ok();
    }
}
