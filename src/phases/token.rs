//! token: settle the bootstrap token for this join: given (flag, env, file, stdin), carried by
//! the bootstrap kubeconfig, remembered from an earlier run, or generated with the OS CSPRNG.
//! A given or generated token is stored 0600 in the state dir, so a resumed run and later single
//! phases use the same one; write-files removes it after success.

use super::Check;
use crate::engine::Ctx;
use crate::engine::context::TokenOrigin;
use crate::error::Result;
use crate::token::BootstrapToken;

/// Done when a token is settled and, if given this run, stored.
pub async fn check(cx: &mut Ctx) -> Result<Check> {
    let path = cx.layout.path("token_file").to_string();
    Ok(match cx.token()? {
        Some((t, origin)) if origin.is_given() => {
            let stored = cx
                .world
                .read_string(&path)?
                .and_then(|s| BootstrapToken::parse(&s).ok());
            if stored.as_ref() == Some(&t) {
                Check::Done(format!("token {t} from {} is stored", origin.describe()))
            } else {
                Check::NotDone(format!(
                    "token {t} from {} is not stored yet",
                    origin.describe()
                ))
            }
        }
        Some((t, origin)) => Check::Done(format!("token {t} from {}", origin.describe())),
        None if cx.settings.bootstrap_kubeconfig.is_some() => {
            Check::Done("the bootstrap kubeconfig carries its own (non-token) credentials".into())
        }
        None => Check::NotDone("no token given: one will be generated".into()),
    })
}

/// Stores the given token or generates one.
pub async fn run(cx: &mut Ctx) -> Result<()> {
    let path = cx.layout.path("token_file").to_string();
    let token = match cx.token()? {
        Some((t, origin)) if origin.is_given() => {
            cx.act(format!(
                "Using bootstrap token {t} from {}",
                origin.describe()
            ));
            t
        }
        Some((t, _)) => t,
        None => {
            let t = BootstrapToken::generate()?;
            cx.act(format!("Generated bootstrap token {t} with the OS CSPRNG"));
            cx.set_token(t.clone(), TokenOrigin::StateFile);
            t
        }
    };
    cx.fact("token_id", token.id())?;
    cx.world.write_if_changed(
        &path,
        format!("{}\n", token.expose_full()).as_bytes(),
        crate::files::SECRET_FILE_MODE,
    )?;
    cx.act(format!(
        "Stored the token at {path} (0600) for resumed runs and later phases"
    ));
    Ok(())
}
