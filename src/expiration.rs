//! `bootlet certs check-expiration` (kubeadm's name): each credential bootlet manages on this
//! node, when it expires, when it is due for rotation, and whether it still verifies against the
//! cluster CA. `renew --watch` sleeps until the earliest of these deadlines.

use serde::Serialize;

use crate::engine::Ctx;
use crate::engine::graph::PhaseGraph;
use crate::engine::journal::Journal;
use crate::engine::world::World;
use crate::error::{Error, ErrorKind, Result};
use crate::output::Output;
use crate::phases::cluster_record::ClusterRecord;
use crate::phases::credentials::{
    PairState, installed_certificate, installed_client, installed_serving,
};
use crate::phases::node_identity::CertKind;
use crate::pki::cert::{CertInfo, fmt_unix, now_unix};
use crate::settings::{OutputFormat, Settings};

/// One row of the report (the fields of `-o json`).
#[derive(Debug, Clone, Serialize)]
pub struct Credential {
    /// `client`, `serving` or `ca`.
    pub name: String,
    /// Inside-root path of the file holding it.
    pub path: String,
    /// Subject, `CN=…, O=…`.
    pub subject: String,
    /// NotAfter, RFC 3339.
    pub not_after: String,
    /// Seconds until NotAfter (negative once expired).
    pub residual_seconds: i64,
    /// When bootlet (and the kubelet) would rotate it, RFC 3339; none for the CA.
    pub rotation_deadline: Option<String>,
    /// Who rotates it: `kubelet` when the installed KubeletConfiguration says the kubelet does
    /// (`bootlet renew` then leaves it alone while it verifies), else `bootlet`; none for the CA.
    pub rotated_by: Option<String>,
    /// Whether it verifies now: chains to the cluster CA, matches its key, the right identity,
    /// within its validity.
    pub verifies: bool,
    /// Why it does not verify, if it does not.
    pub problem: Option<String>,
    #[serde(skip)]
    deadline_unix: Option<i64>,
}

fn subject(info: &CertInfo) -> String {
    let mut parts: Vec<String> = info
        .common_names
        .iter()
        .map(|c| format!("CN={c}"))
        .collect();
    parts.extend(info.organizations.iter().map(|o| format!("O={o}")));
    parts.join(", ")
}

/// A read-only view of the node (no lock, no writes).
fn node_view(settings: &Settings) -> Result<Ctx> {
    let mut settings = settings.clone();
    crate::engine::recorded_layout::adopt(&mut settings)?;
    let layout = settings.file_layout()?;
    let probe = World::new(
        layout.clone(),
        None,
        Journal::new(&settings.node_name, settings.layout),
    );
    probe.check_confined()?;
    let journal = match probe.read_journal_text()? {
        Some((text, shown)) => {
            let j = Journal::parse(&text, &shown)?;
            if !settings.node_name_given {
                settings.node_name = j.node_name.clone();
            }
            j
        }
        None => Journal::new(&settings.node_name, settings.layout),
    };
    let world = World::new(layout.clone(), None, journal);
    let graph = PhaseGraph::shared("renew")?;
    Ok(Ctx::new(settings, layout, world, Output::quiet(), graph))
}

fn row(cx: &Ctx, kind: CertKind) -> Result<Option<Credential>> {
    let Some((path, pem)) = installed_certificate(cx, kind)? else {
        return Ok(None);
    };
    let ders = crate::pki::parse_certs_pem(pem.as_bytes(), &path)?;
    let info = CertInfo::parse(&ders[0])?;
    let state = match kind {
        CertKind::Client => installed_client(cx)?,
        CertKind::Serving => installed_serving(cx)?,
    };
    let problem = match state {
        PairState::Valid(_) => None,
        PairState::Invalid(why) => Some(why),
        PairState::Absent => Some("its key is missing".into()),
    };
    let deadline = crate::pki::rotation::rotation_deadline(&info);
    let by_kubelet = crate::phases::renewal::kubelet_rotates(cx, kind).is_some();
    // `renew --watch` wakes at bootlet's deadlines; for a certificate the kubelet rotates, only at
    // its expiry (when a kubelet that did not rotate it leaves bootlet to renew it).
    let watch_at = if by_kubelet { info.not_after } else { deadline };
    Ok(Some(Credential {
        name: kind.stem().into(),
        path,
        subject: subject(&info),
        not_after: fmt_unix(info.not_after),
        residual_seconds: info.not_after - now_unix(),
        rotation_deadline: Some(fmt_unix(deadline)),
        rotated_by: Some(if by_kubelet { "kubelet" } else { "bootlet" }.into()),
        verifies: problem.is_none(),
        problem,
        deadline_unix: Some(watch_at),
    }))
}

fn ca_row(cx: &Ctx) -> Result<Option<Credential>> {
    let Some(rec) = ClusterRecord::load(cx)? else {
        return Ok(None);
    };
    let Some(der) = rec.ca_ders().into_iter().next() else {
        return Ok(None);
    };
    let info = CertInfo::parse(&der)?;
    let expired = info.not_after <= now_unix();
    Ok(Some(Credential {
        name: "ca".into(),
        path: cx
            .layout
            .get("ca_cert")
            .map(str::to_string)
            .unwrap_or_else(|| ClusterRecord::path(cx)),
        subject: subject(&info),
        not_after: fmt_unix(info.not_after),
        residual_seconds: info.not_after - now_unix(),
        rotation_deadline: None,
        rotated_by: None,
        verifies: !expired,
        problem: expired.then(|| "the cluster CA has expired".to_string()),
        deadline_unix: None,
    }))
}

/// Every credential bootlet manages on the node of `settings`.
pub fn credentials(settings: &Settings) -> Result<Vec<Credential>> {
    let cx = node_view(settings)?;
    let mut rows = Vec::new();
    for kind in [CertKind::Client, CertKind::Serving] {
        rows.extend(row(&cx, kind)?);
    }
    rows.extend(ca_row(&cx)?);
    Ok(rows)
}

/// The earliest rotation deadline among the node's certificates (unix seconds).
pub fn earliest_deadline(rows: &[Credential]) -> Option<i64> {
    rows.iter().filter_map(|r| r.deadline_unix).min()
}

/// kubeadm's residual-time style: `364d`, `23h`, `59m`, `42s`, or `<invalid>` once expired.
pub fn residual(seconds: i64) -> String {
    match seconds {
        s if s <= 0 => "<invalid>".into(),
        s if s >= 86_400 => format!("{}d", s / 86_400),
        s if s >= 3_600 => format!("{}h", s / 3_600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn table(rows: &[Credential]) -> String {
    let mut out = format!(
        "{:<9} {:<22} {:<9} {:<22} {:<11} {:<9} {}\n",
        "CERT", "EXPIRES", "RESIDUAL", "ROTATION DUE", "ROTATED BY", "VERIFIES", "PATH (SUBJECT)"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<9} {:<22} {:<9} {:<22} {:<11} {:<9} {} ({})\n",
            r.name,
            r.not_after,
            residual(r.residual_seconds),
            r.rotation_deadline.as_deref().unwrap_or("-"),
            r.rotated_by.as_deref().unwrap_or("-"),
            if r.verifies { "yes" } else { "no" },
            r.path,
            r.subject
        ));
        if let Some(p) = &r.problem {
            out.push_str(&format!("          ^ {p}\n"));
        }
    }
    out
}

/// Runs `certs check-expiration`: prints the table (or JSON) and fails when something expired.
pub fn run(settings: &Settings) -> Result<i32> {
    let rows = credentials(settings)?;
    if rows.is_empty() {
        return Err(Error::new(
            ErrorKind::MissingInput,
            format!(
                "no credentials under {}: this node has not been joined (`bootlet join`)",
                settings.root.display()
            ),
        ));
    }
    if settings.output == OutputFormat::Json {
        crate::outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "credentials": rows }))
                .unwrap_or_default()
        );
    } else {
        crate::out!("{}", table(&rows));
    }
    let expired: Vec<&Credential> = rows.iter().filter(|r| r.residual_seconds <= 0).collect();
    if let Some(first) = expired.first() {
        return Err(Error::untrusted(format!(
            "the {} certificate ({}) expired at {}; renew it with `bootlet renew` (a client certificate past expiry needs --bootstrap-kubeconfig, or a new join)",
            first.name, first.path, first.not_after
        )));
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn residual_times_read_like_kubeadms() {
        assert_eq!(super::residual(365 * 86_400), "365d");
        assert_eq!(super::residual(7_200), "2h");
        assert_eq!(super::residual(90), "1m");
        assert_eq!(super::residual(5), "5s");
        assert_eq!(super::residual(0), "<invalid>");
    }
}
