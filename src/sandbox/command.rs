//! `bootlet sandbox`: its flags turned into options, and the serving loop with what it prints.

use super::{Sandbox, SandboxOptions};
use crate::error::{Error, Result};

/// The options of `bootlet sandbox`, checked.
pub fn options(args: &crate::cli::SandboxArgs) -> Result<SandboxOptions> {
    if !(0.0..=1.0).contains(&args.fault_rate) {
        return Err(Error::usage(format!(
            "--fault-rate {} must be between 0 and 1",
            args.fault_rate
        )));
    }
    let latency_ms = match &args.latency {
        None => (0, 0),
        Some(l) => {
            let parse = |s: &str| {
                s.trim().trim_end_matches("ms").parse::<u64>().map_err(|_| {
                    Error::usage(format!(
                        "--latency {l:?}: use MS or MIN-MAX in milliseconds"
                    ))
                })
            };
            match l.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (parse(a)?, parse(b)?);
                    if a > b {
                        return Err(Error::usage(format!("--latency {l:?}: MIN is above MAX")));
                    }
                    (a, b)
                }
                None => {
                    let v = parse(l)?;
                    (v, v)
                }
            }
        }
    };
    let ca = match (&args.ca_cert, &args.ca_key) {
        (Some(c), Some(k)) => Some((
            std::fs::read_to_string(c).map_err(|e| Error::io("read", c, e))?,
            std::fs::read_to_string(k).map_err(|e| Error::io("read", k, e))?,
        )),
        _ => None,
    };
    Ok(SandboxOptions {
        port: args.port,
        ca,
        bare: args.bare,
        auto_approve_serving: args.auto_approve_serving,
        tamper_cluster_info: args.tamper_cluster_info,
        fault_rate: args.fault_rate,
        latency_ms,
        signing_duration: crate::settings::parse_duration(
            &args.signing_duration,
            "--signing-duration",
        )?,
        drop_watch_after: args
            .drop_watch_after
            .as_deref()
            .map(|d| crate::settings::parse_duration(d, "--drop-watch-after"))
            .transpose()?,
        ..Default::default()
    })
}

/// Serves until Ctrl-C, printing how to reach the sandbox and join a node to it.
pub async fn serve(args: crate::cli::SandboxArgs, options: SandboxOptions) -> Result<()> {
    // Started (its input checked) before the directory is locked: bad input leaves nothing there.
    let sandbox = Sandbox::start(options).await?;
    let dir_lock = match lock_dir(&args.dir) {
        Ok(l) => l,
        Err(e) => {
            sandbox.shutdown().await;
            return Err(e);
        }
    };
    sandbox.write_files(&args.dir)?;
    record_holder(&dir_lock, sandbox.url());
    let pin = sandbox.ca_pin()?;
    crate::outln!("bootlet sandbox is serving {}", sandbox.url());
    crate::outln!(
        "  admin kubeconfig: {} (try: kubectl --kubeconfig {} get ns)",
        args.dir.join("admin.conf").display(),
        args.dir.join("admin.conf").display()
    );
    crate::outln!(
        "  cluster CA:       {} ({pin})",
        args.dir.join("ca.crt").display()
    );
    crate::outln!(
        "  join a node:      bootlet join --admin-kubeconfig {} --root /tmp/node",
        args.dir.join("admin.conf").display()
    );
    crate::outln!("Press Ctrl-C to stop.");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| Error::internal(format!("cannot listen for SIGTERM: {e}")))?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    sandbox.shutdown().await;
    crate::outln!("bootlet sandbox stopped");
    Ok(())
}

/// The lock a serving sandbox holds on its `--dir` (`DIR/.sandbox.lock`, flock'd while it runs):
/// a second sandbox there would overwrite the first one's admin.conf, ca.crt and ca.key and leave
/// it unreachable.
fn lock_dir(dir: &std::path::Path) -> Result<std::fs::File> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
    let path = dir.join(".sandbox.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&path)
        .map_err(|e| Error::io("open the lock file", &path, e))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(rustix::io::Errno::WOULDBLOCK) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder: String = holder
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect();
            Err(Error::conflict(format!(
                "a sandbox already serves from {} ({}); stop it (Ctrl-C) or choose another --dir: its admin.conf, ca.crt and ca.key were left as they are",
                dir.display(),
                if holder.is_empty() {
                    "another process".to_string()
                } else {
                    holder
                }
            )))
        }
        Err(e) => Err(Error::io("lock", &path, e.into())),
    }
}

/// Writes who holds the lock (pid and URL), for the message a second sandbox gives.
fn record_holder(file: &std::fs::File, url: &str) {
    use std::io::{Seek, Write};
    let mut f = file;
    let _ = f.set_len(0);
    let _ = f.seek(std::io::SeekFrom::Start(0));
    let _ = write!(f, "pid {} serving {url}", std::process::id());
}
