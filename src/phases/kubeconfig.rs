//! kubeconfig: the bootstrap kubeconfig at the layout's path (0600): the discovered server and
//! CA, and the token user kubeadm writes (`tls-bootstrap-token-user`). With
//! `--bootstrap-kubeconfig` the given file is normalized into place instead (CA embedded, so the
//! copy does not depend on files next to the original).

use super::Check;
use super::cluster_record::ClusterRecord;
use crate::engine::Ctx;
use crate::error::{Error, Result};
use crate::kubeconfig::{Credentials, UserSpec, render_bootstrap, render_user};

/// An input the bootstrap kubeconfig cannot be built without.
enum Missing {
    Cluster,
    Token,
}

impl Missing {
    fn describe(&self) -> &'static str {
        match self {
            Missing::Cluster => "no trusted cluster recorded yet",
            Missing::Token => "no bootstrap token yet",
        }
    }
}

/// The bytes the layout's bootstrap kubeconfig should hold, or which input is missing.
fn expected(cx: &mut Ctx) -> Result<std::result::Result<String, Missing>> {
    if let Some(path) = cx.settings.bootstrap_kubeconfig.clone() {
        let access = cx.given_kubeconfig(&path, "the bootstrap kubeconfig")?;
        let ca = access
            .ca_pem
            .clone()
            .ok_or_else(|| Error::invalid("the bootstrap kubeconfig has no CA"))?;
        let text = match &access.credentials {
            Credentials::Token(_) => {
                let t = access.bootstrap_token().expect("token")?;
                render_bootstrap(&access.server, &ca, &t)?
            }
            Credentials::ClientCert { cert_pem, key_pem } => render_user(
                "kubernetes",
                &access.server,
                &ca,
                "tls-bootstrap-user",
                "tls-bootstrap-user@kubernetes",
                UserSpec::EmbeddedCert { cert_pem, key_pem },
            )?,
            Credentials::None => {
                return Err(Error::invalid(
                    "the bootstrap kubeconfig has no credentials (no token, no client certificate)",
                ));
            }
        };
        return Ok(Ok(text));
    }
    let rec = match ClusterRecord::load(cx)? {
        Some(r) => r,
        None => match super::discovery::file_source_record(cx)? {
            Some(r) => r,
            None => return Ok(Err(Missing::Cluster)),
        },
    };
    let Some((token, _)) = cx.token()? else {
        return Ok(Err(Missing::Token));
    };
    Ok(Ok(render_bootstrap(
        &rec.server,
        rec.ca.as_bytes(),
        &token,
    )?))
}

/// Done when the file holds exactly what it should.
pub async fn check(cx: &mut Ctx) -> Result<Check> {
    let path = cx.layout.path("bootstrap_kubeconfig").to_string();
    let want = match expected(cx)? {
        Ok(w) => w,
        Err(Missing::Token) if super::credentials::has_own_client_credentials(cx)? => {
            return Ok(Check::Done(
                "not needed: the node has its own client credentials".into(),
            ));
        }
        Err(missing) => return Ok(Check::NotDone(missing.describe().into())),
    };
    Ok(match cx.world.read_string(&path)? {
        Some(have)
            if have == want && cx.world.mode_and_owner(&path).map(|(m, _)| m) == Some(0o600) =>
        {
            Check::Done(format!("{path} holds the bootstrap kubeconfig"))
        }
        Some(_) => Check::NotDone(format!(
            "{path} differs from the bootstrap kubeconfig this run needs"
        )),
        None => Check::NotDone(format!("{path} does not exist")),
    })
}

/// Writes the bootstrap kubeconfig.
pub async fn run(cx: &mut Ctx) -> Result<()> {
    let path = cx.layout.path("bootstrap_kubeconfig").to_string();
    let text = match expected(cx)? {
        Ok(t) => t,
        Err(Missing::Cluster) => return Err(cx.missing("trusted cluster", ClusterRecord::path(cx))),
        Err(Missing::Token) => {
            return Err(cx.missing("bootstrap token", "a given token or the state token file"));
        }
    };
    cx.world
        .write_if_changed(&path, text.as_bytes(), crate::files::SECRET_FILE_MODE)?;
    let verb = cx.sent("Wrote", "Would write");
    cx.act(format!("{verb} the bootstrap kubeconfig {path} (0600)"));
    Ok(())
}
