//! The one way bootlet writes files, and the two on-disk layouts.
//!
//! Every write goes to a temporary file in the target's own directory, is fsynced, renamed over the
//! target and the directory fsynced, so a reader (or a crash) sees the old file or the new one,
//! never a part. Modes are set on the temporary file before any byte is written, so a key is never
//! readable by others, not even for a moment. Directories bootlet creates are private (0700).

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{ErrorKind as IoKind, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Prefix of the temporary files the writer creates beside its targets.
pub const TEMP_PREFIX: &str = ".bootlet-tmp-";

/// Mode of directories bootlet creates.
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// Mode of private keys and kubeconfigs.
pub const SECRET_FILE_MODE: u32 = 0o600;
/// Mode of certificates and other public files.
pub const PUBLIC_FILE_MODE: u32 = 0o644;

/// Creates `dir` and any missing parents with mode 0700. Existing directories keep their mode:
/// bootlet does not chmod directories it did not create (e.g. a distribution's `/etc/kubernetes`).
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    match fs::metadata(dir) {
        Ok(m) if m.is_dir() => return Ok(()),
        Ok(_) => {
            return Err(Error::conflict(format!(
                "{} exists but is not a directory; move it away",
                dir.display()
            )));
        }
        Err(_) => {}
    }
    DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(dir)
        .map_err(|e| Error::io("create directory", dir, e))?;
    // The process umask may have narrowed the mode further; widen back to exactly 0700 only for the
    // leaf, which we just created.
    fs::set_permissions(dir, Permissions::from_mode(PRIVATE_DIR_MODE))
        .map_err(|e| Error::io("set mode of", dir, e))?;
    Ok(())
}

/// Writes `contents` to `path` atomically with exactly `mode`, durable when it returns.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    write_atomic_dir_unsynced(path, contents, mode)?;
    sync_dir(parent_of(path)?)
}

/// Runs blocking file work (fsync) so that an async runtime keeps serving its other tasks: on a
/// multi-threaded tokio runtime the worker hands them off first; elsewhere it simply runs.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Like [`write_atomic`], but the rename is made durable later by the caller's [`sync_directory`]
/// of the parent (one sync for several files). Readers still see the old file or the new one.
pub fn write_atomic_dir_unsynced(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let dir = parent_of(path)?;
    ensure_private_dir(dir)?;
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::internal(format!("no file name in {}", path.display())))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!("{TEMP_PREFIX}{}-", file_name.to_string_lossy()))
        .permissions(Permissions::from_mode(mode & 0o600))
        .tempfile_in(dir)
        .map_err(|e| Error::io("create a temporary file in", dir, e))?;
    // Exact mode before the content lands (tempfile's create mode is subject to the umask).
    tmp.as_file()
        .set_permissions(Permissions::from_mode(mode))
        .map_err(|e| Error::io("set mode of", tmp.path(), e))?;
    tmp.write_all(contents)
        .map_err(|e| Error::io("write", tmp.path(), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| Error::io("fsync", tmp.path(), e))?;
    SYNCS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tmp.persist(path)
        .map_err(|e| Error::io("rename into place", path, e.error))?;
    Ok(())
}

/// Points the symlink `link` at `target` atomically (a temporary link renamed over the old one),
/// unlike the kubelet's remove-then-rename (certificate_store.go `updateSymlink`), which leaves a
/// window with no `-current.pem` at all. The caller syncs the directory.
pub fn symlink_atomic(link: &Path, target: &Path) -> Result<()> {
    let dir = parent_of(link)?;
    ensure_private_dir(dir)?;
    if let Ok(meta) = fs::symlink_metadata(link)
        && !meta.file_type().is_symlink()
    {
        return Err(Error::conflict(format!(
            "{} is a regular file where bootlet keeps a symlink; move it away",
            link.display()
        )));
    }
    let tmp = dir.join(format!(
        "{TEMP_PREFIX}{}-{}",
        link.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp).map_err(|e| Error::io("create symlink", &tmp, e))?;
    fs::rename(&tmp, link).map_err(|e| Error::io("rename symlink into place", link, e))?;
    Ok(())
}

/// Removes `path` if it exists without syncing its directory (the caller syncs once for a batch,
/// see [`sync_directory`]); returns whether it did.
pub fn remove_file_unsynced(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == IoKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("remove", path, e)),
    }
}

/// fsyncs a directory, making renames and removals in it durable.
pub fn sync_directory(dir: &Path) -> Result<()> {
    sync_dir(dir)
}

/// Reads `path`, or `None` if it does not exist.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == IoKind::NotFound => Ok(None),
        Err(e) if e.kind() == IoKind::IsADirectory => Err(Error::conflict(format!(
            "{} is a directory where a file was expected; move it away",
            path.display()
        ))),
        Err(e) => Err(Error::io("read", path, e)),
    }
}

/// Removes temporary files an interrupted writer left in `dir` (they never sit at a target path).
pub fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// The permission bits of `path`, following symlinks.
pub fn mode_of(path: &Path) -> Option<u32> {
    fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777)
}

fn parent_of(path: &Path) -> Result<&Path> {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or_else(|| Error::internal(format!("{} has no parent directory", path.display())))
}

/// fsync calls made by this process (files and directories), for the benchmarks' profile.
pub static SYNCS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn sync_dir(dir: &Path) -> Result<()> {
    SYNCS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let f = File::open(dir).map_err(|e| Error::io("open directory", dir, e))?;
    f.sync_all()
        .map_err(|e| Error::io("fsync directory", dir, e))
}

/// Opens (creating if needed) a file for locking; never truncates an existing one.
pub fn open_lock_file(path: &Path) -> Result<File> {
    ensure_private_dir(parent_of(path)?)?;
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(SECRET_FILE_MODE)
        .open(path)
        .map_err(|e| Error::io("open lock file", path, e))
}

/// Which on-disk convention the node's files follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LayoutKind {
    /// kubeadm and the kubelet: `/etc/kubernetes`, `/var/lib/kubelet/pki`, `-current.pem` links.
    #[default]
    Kubelet,
    /// Krustlet: `$KRUSTLET_DATA_DIR/config/{bootstrap.conf,kubeconfig,krustlet.crt,krustlet.key}`.
    Krustlet,
}

impl LayoutKind {
    /// The layout's name as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            LayoutKind::Kubelet => "kubelet",
            LayoutKind::Krustlet => "krustlet",
        }
    }
}

impl std::str::FromStr for LayoutKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "kubelet" => Ok(LayoutKind::Kubelet),
            "krustlet" => Ok(LayoutKind::Krustlet),
            other => Err(Error::usage(format!(
                "unknown layout {other:?}; use kubelet or krustlet"
            ))),
        }
    }
}

/// The paths of one layout under one root. Paths are kept as seen from inside the root
/// (`/etc/kubernetes/kubelet.conf`) and mapped to the host with [`Layout::host`].
#[derive(Debug, Clone)]
pub struct Layout {
    kind: LayoutKind,
    root: PathBuf,
    vars: BTreeMap<&'static str, String>,
}

impl Layout {
    /// Builds the layout. `krustlet_data_dir` and `state_dir` are inside-root absolute paths.
    pub fn new(
        kind: LayoutKind,
        root: PathBuf,
        krustlet_data_dir: &str,
        state_dir: Option<&str>,
    ) -> Result<Self> {
        let mut vars = BTreeMap::new();
        let data = krustlet_data_dir.trim_end_matches('/').to_string();
        if !data.starts_with('/') {
            return Err(Error::usage(format!(
                "the krustlet data dir {data:?} must be an absolute path"
            )));
        }
        match kind {
            LayoutKind::Kubelet => {
                vars.insert("state", "/var/lib/bootlet".to_string());
                vars.insert("config_dir", "/etc/kubernetes".to_string());
                vars.insert(
                    "bootstrap_kubeconfig",
                    "/etc/kubernetes/bootstrap-kubelet.conf".into(),
                );
                vars.insert("kubeconfig", "/etc/kubernetes/kubelet.conf".into());
                vars.insert("ca_cert", "/etc/kubernetes/pki/ca.crt".into());
                vars.insert("pki_dir", "/var/lib/kubelet/pki".into());
                vars.insert(
                    "client_current",
                    "/var/lib/kubelet/pki/kubelet-client-current.pem".into(),
                );
                vars.insert(
                    "server_current",
                    "/var/lib/kubelet/pki/kubelet-server-current.pem".into(),
                );
            }
            LayoutKind::Krustlet => {
                vars.insert("state", format!("{data}/bootlet"));
                vars.insert("config_dir", format!("{data}/config"));
                vars.insert(
                    "bootstrap_kubeconfig",
                    format!("{data}/config/bootstrap.conf"),
                );
                vars.insert("kubeconfig", format!("{data}/config/kubeconfig"));
                vars.insert("serving_cert", format!("{data}/config/krustlet.crt"));
                vars.insert("serving_key", format!("{data}/config/krustlet.key"));
            }
        }
        if let Some(s) = state_dir {
            if !s.starts_with('/') {
                return Err(Error::usage(format!(
                    "--state-dir {s:?} must be an absolute path"
                )));
            }
            vars.insert("state", s.trim_end_matches('/').to_string());
        }
        let state = vars["state"].clone();
        vars.insert("staging", format!("{state}/staging"));
        vars.insert("journal", format!("{state}/journal.toml"));
        vars.insert("token_file", format!("{state}/bootstrap-token"));
        vars.insert("cluster_ca", format!("{state}/cluster-ca.crt"));
        Ok(Layout { kind, root, vars })
    }

    /// The layout kind.
    pub fn kind(&self) -> LayoutKind {
        self.kind
    }

    /// The root prefix.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// An inside-root path by name (`kubeconfig`, `pki_dir`, ...), if this layout has it.
    pub fn get(&self, var: &str) -> Option<&str> {
        self.vars.get(var).map(String::as_str)
    }

    /// An inside-root path by name; panics on a name the layout lacks, which is a programming error
    /// caught by the tests of both layouts.
    pub fn path(&self, var: &str) -> &str {
        self.get(var)
            .unwrap_or_else(|| panic!("layout {} has no path {var}", self.kind.name()))
    }

    /// `{staging}/name`.
    pub fn staged(&self, name: &str) -> String {
        format!("{}/{name}", self.path("staging"))
    }

    /// Maps an inside-root path to the host.
    pub fn host(&self, inside: &str) -> PathBuf {
        host_path(&self.root, inside)
    }

    /// Substitutes `{var}` references in a manifest path template.
    pub fn expand(&self, template: &str) -> Option<String> {
        let mut out = String::new();
        let mut rest = template;
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}')? + start;
            out.push_str(self.get(&rest[start + 1..end])?);
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        Some(out)
    }

    /// All variables, for docs and reports.
    pub fn vars(&self) -> &BTreeMap<&'static str, String> {
        &self.vars
    }

    /// How a file at `from_file` refers to `target` (both inside-root): absolute when the root is
    /// `/` (the kubelet's convention), relative to the referring file's directory otherwise, so the
    /// reference resolves the same inside the booted image and when inspected from outside.
    /// client-go resolves relative kubeconfig paths against the kubeconfig's directory.
    pub fn reference(&self, from_file: &str, target: &str) -> String {
        if self.root == Path::new("/") {
            return target.to_string();
        }
        relative_path(from_file, target)
    }
}

/// Maps an inside-root path to the host path under `root`.
pub fn host_path(root: &Path, inside: &str) -> PathBuf {
    root.join(inside.trim_start_matches('/'))
}

/// The path of `target` relative to the directory of `from_file` (both absolute, `/`-separated).
pub fn relative_path(from_file: &str, target: &str) -> String {
    let from_dir: Vec<&str> = from_file.split('/').filter(|s| !s.is_empty()).collect();
    let from_dir = &from_dir[..from_dir.len().saturating_sub(1)];
    let to: Vec<&str> = target.split('/').filter(|s| !s.is_empty()).collect();
    let common = from_dir.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<&str> = vec![".."; from_dir.len() - common];
    parts.extend_from_slice(&to[common..]);
    parts.join("/")
}

/// Whether `path` matches `pattern`, where `*` matches any run of characters except `/`.
pub fn glob_match(pattern: &str, path: &str) -> bool {
    fn go(p: &[u8], s: &[u8]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((b'*', rest)) => (0..=s.len())
                .take_while(|i| *i == 0 || s[i - 1] != b'/')
                .any(|i| go(rest, &s[i..])),
            Some((c, rest)) => s.first() == Some(c) && go(rest, &s[1..]),
        }
    }
    go(pattern.as_bytes(), path.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_sets_exact_mode_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a/b/key.pem");
        write_atomic(&p, b"one", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"one");
        assert_eq!(mode_of(&p), Some(0o600));
        assert_eq!(mode_of(&dir.path().join("a/b")), Some(0o700));
        write_atomic(&p, b"two", 0o644).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(mode_of(&p), Some(0o644));
        let leftovers: Vec<_> = fs::read_dir(p.parent().unwrap())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(TEMP_PREFIX))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn symlink_swap_is_atomic_and_refuses_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("cur.pem");
        symlink_atomic(&link, Path::new("a.pem")).unwrap();
        symlink_atomic(&link, Path::new("b.pem")).unwrap();
        assert_eq!(fs::read_link(&link).unwrap(), Path::new("b.pem"));
        let plain = dir.path().join("plain.pem");
        fs::write(&plain, "x").unwrap();
        assert!(symlink_atomic(&plain, Path::new("b.pem")).is_err());
    }

    #[test]
    fn relative_paths_and_globs() {
        assert_eq!(
            relative_path("/etc/kubernetes/kubelet.conf", "/var/lib/kubelet/pki/x.pem"),
            "../../var/lib/kubelet/pki/x.pem"
        );
        assert_eq!(relative_path("/a/b/c.conf", "/a/b/d.pem"), "d.pem");
        assert!(glob_match(
            "/p/kubelet-client-*.pem",
            "/p/kubelet-client-2024-01-01.pem"
        ));
        assert!(!glob_match(
            "/p/kubelet-client-*.pem",
            "/p/x/kubelet-client-1.pem"
        ));
        assert!(glob_match("/p/a", "/p/a"));
    }

    #[test]
    fn layouts_expand_templates() {
        let l = Layout::new(LayoutKind::Kubelet, "/".into(), "/root/.krustlet", None).unwrap();
        assert_eq!(
            l.expand("{pki_dir}/kubelet-client-*.pem").unwrap(),
            "/var/lib/kubelet/pki/kubelet-client-*.pem"
        );
        assert!(l.expand("{serving_key}").is_none());
        let k = Layout::new(
            LayoutKind::Krustlet,
            "/tmp/r".into(),
            "/home/u/.krustlet",
            None,
        )
        .unwrap();
        assert_eq!(k.path("kubeconfig"), "/home/u/.krustlet/config/kubeconfig");
        assert_eq!(
            k.host(k.path("kubeconfig")),
            Path::new("/tmp/r/home/u/.krustlet/config/kubeconfig")
        );
    }
}
