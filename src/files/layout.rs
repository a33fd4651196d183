//! The two on-disk layouts (kubelet, Krustlet): which file lives where, as seen from inside the
//! root, and how files refer to each other.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

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
                vars.insert("kubelet_config", "/var/lib/kubelet/config.yaml".into());
                vars.insert("kubelet_flags", "/var/lib/kubelet/bootlet-flags.env".into());
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
        vars.insert("lock", format!("{state}/lock"));
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

    /// Whether `inside` is bootlet's own state (under the state directory, journal and lock
    /// aside): such a file counts only when the journal records it.
    pub fn is_tracked_state(&self, inside: &str) -> bool {
        let state = self.path("state");
        inside
            .strip_prefix(state)
            .is_some_and(|r| r.starts_with('/'))
            && inside != self.path("journal")
            && inside != self.path("lock")
    }

    /// Whether the state file `inside` holds a secret (a key or the stored token), so that it must
    /// not be readable by group or others.
    pub fn is_secret_state(&self, inside: &str) -> bool {
        self.is_tracked_state(inside)
            && (inside.ends_with(".key") || inside == self.path("token_file"))
    }

    /// The directories this layout writes into (inside-root), for the confinement check.
    pub fn directories(&self) -> Vec<String> {
        let mut dirs: Vec<String> = self
            .vars
            .iter()
            .filter(|(k, _)| !matches!(**k, "state" | "staging" | "config_dir" | "pki_dir"))
            .filter_map(|(_, v)| v.rfind('/').map(|i| v[..i].to_string()))
            .chain(
                ["state", "staging", "config_dir", "pki_dir"]
                    .iter()
                    .filter_map(|k| self.get(k).map(str::to_string)),
            )
            .filter(|d| !d.is_empty())
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs
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

    #[test]
    fn state_files_are_tracked_and_keys_are_secret() {
        let l = Layout::new(LayoutKind::Kubelet, "/".into(), "/root/.krustlet", None).unwrap();
        assert!(l.is_tracked_state("/var/lib/bootlet/cluster.toml"));
        assert!(l.is_tracked_state("/var/lib/bootlet/staging/client.key"));
        assert!(!l.is_tracked_state("/var/lib/bootlet/journal.toml"));
        assert!(!l.is_tracked_state("/var/lib/bootlet/lock"));
        assert!(!l.is_tracked_state("/var/lib/bootletx/a"));
        assert!(!l.is_tracked_state("/etc/kubernetes/kubelet.conf"));
        assert!(l.is_secret_state("/var/lib/bootlet/staging/client.key"));
        assert!(l.is_secret_state("/var/lib/bootlet/bootstrap-token"));
        assert!(!l.is_secret_state("/var/lib/bootlet/staging/client.crt"));
        let dirs = l.directories();
        for d in [
            "/etc/kubernetes",
            "/etc/kubernetes/pki",
            "/var/lib/kubelet/pki",
            "/var/lib/bootlet/staging",
        ] {
            assert!(dirs.contains(&d.to_string()), "{d} in {dirs:?}");
        }
    }
}
