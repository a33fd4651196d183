//! token: settle the bootstrap token for this join. A token given this run (flag, env, file,
//! stdin) or carried by the bootstrap kubeconfig is only validated: it stays where its owner keeps
//! it, and later runs are given it again. A generated token is stored 0600 in the state dir, so a
//! resumed run and later single phases (`phase secret`, `phase kubeconfig`) use the same one;
//! write-files removes it after success. Its expiry is recorded with it; an expired stored token
//! (or any, with `--new-token`) is replaced by a fresh one, never reused.

use super::Check;
use crate::engine::Ctx;
use crate::engine::context::TokenOrigin;
use crate::error::Result;
use crate::token::BootstrapToken;

/// Done when a token is known.
pub async fn check(cx: &mut Ctx) -> Result<Check> {
    Ok(match cx.token()? {
        Some((t, origin)) => Check::Done(format!("token {t} from {}", origin.describe())),
        None if cx.settings.bootstrap_kubeconfig.is_some() => {
            Check::Done("the bootstrap kubeconfig carries its own (non-token) credentials".into())
        }
        // A node that has its own client credentials asks as itself: a token generated now would
        // be one the cluster never knew, written into a bootstrap kubeconfig nobody can use.
        None if cx.settings.admin_kubeconfig.is_none()
            && super::credentials::has_own_client_credentials(cx)? =>
        {
            Check::Done("not needed: the node has its own client credentials".into())
        }
        None => Check::NotDone(
            cx.token_passed_over()
                .unwrap_or("no token given: one will be generated")
                .to_string(),
        ),
    })
}

/// Generates and stores a token.
pub async fn run(cx: &mut Ctx) -> Result<()> {
    let path = cx.layout.path("token_file").to_string();
    let token = BootstrapToken::generate()?;
    cx.act(format!(
        "Generated bootstrap token {token} with the OS CSPRNG"
    ));
    cx.note("token_id", token.id());
    // The expiry is fixed now, so that the Secret made later (or re-checked by `phase secret`)
    // carries the same one and an expired token is never reused or registered again.
    if !cx.settings.token_ttl.is_zero() {
        let at = time::OffsetDateTime::now_utc() + cx.settings.token_ttl;
        cx.note(
            "expires_at",
            &crate::pki::cert::fmt_unix(at.unix_timestamp()),
        );
    }
    // Durable at once (with the journal that records it): the Secret about to be created must
    // never outlive the only copy here.
    cx.world.write_durable(
        &path,
        format!("{}\n", token.expose_full()).as_bytes(),
        crate::files::SECRET_FILE_MODE,
    )?;
    cx.set_token(token, TokenOrigin::StateFile);
    let verb = cx.sent("Stored", "Would store");
    cx.act(format!(
        "{verb} it at {path} (0600) for resumed runs and later phases"
    ));
    Ok(())
}
