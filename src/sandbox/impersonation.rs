//! Impersonation (`Impersonate-User`, `Impersonate-Group`, `Impersonate-Uid`,
//! `Impersonate-Extra-*`), as `staging/src/k8s.io/apiserver/pkg/endpoints/filters/impersonation.go`
//! does it: every requested attribute needs the `impersonate` verb on it (`users`, `groups`,
//! `serviceaccounts` in the account's namespace, `uids` and `userextras/<key>` in
//! `authentication.k8s.io`); the impersonated user gets the requested groups plus
//! `system:authenticated` (or `system:unauthenticated` for `system:anonymous`).

#![allow(clippy::result_large_err)]

use http::HeaderMap;
use hyper::Response;

use super::authn::UserInfo;
use super::http::{Body, bad_request, status};
use super::rbac::{Attributes, allowed, forbidden_message};
use super::store::Store;

/// The identity a request acts as: `requester`, or whom it impersonates if it may.
pub fn effective_user(
    store: &Store,
    requester: UserInfo,
    headers: &HeaderMap,
) -> Result<UserInfo, Response<Body>> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect()
    };
    let user = values("impersonate-user").into_iter().next();
    let groups = values("impersonate-group");
    let uid = values("impersonate-uid").into_iter().next();
    let extras: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| {
            k.as_str()
                .strip_prefix("impersonate-extra-")
                .map(|key| (key.to_string(), v.to_str().unwrap_or_default().to_string()))
        })
        .collect();
    let Some(user) = user else {
        if !groups.is_empty() || uid.is_some() || !extras.is_empty() {
            return Err(bad_request(
                "requested impersonation of groups, uid or extras without impersonating a user",
            ));
        }
        return Ok(requester);
    };
    let mut checks: Vec<Attributes> = Vec::new();
    match user
        .strip_prefix("system:serviceaccount:")
        .and_then(|r| r.split_once(':'))
    {
        Some((ns, name)) => checks.push(Attributes {
            verb: "impersonate".into(),
            resource: "serviceaccounts".into(),
            namespace: ns.into(),
            name: name.into(),
            ..Default::default()
        }),
        None => checks.push(Attributes {
            verb: "impersonate".into(),
            resource: "users".into(),
            name: user.clone(),
            ..Default::default()
        }),
    }
    for g in &groups {
        checks.push(Attributes {
            verb: "impersonate".into(),
            resource: "groups".into(),
            name: g.clone(),
            ..Default::default()
        });
    }
    if let Some(u) = &uid {
        checks.push(Attributes {
            verb: "impersonate".into(),
            group: "authentication.k8s.io".into(),
            resource: "uids".into(),
            name: u.clone(),
            ..Default::default()
        });
    }
    for (key, value) in &extras {
        checks.push(Attributes {
            verb: "impersonate".into(),
            group: "authentication.k8s.io".into(),
            resource: "userextras".into(),
            subresource: key.clone(),
            name: value.clone(),
            ..Default::default()
        });
    }
    for a in &checks {
        if !allowed(store, &requester, a) {
            return Err(status(
                403,
                "Forbidden",
                &forbidden_message(&requester, a),
                None,
            ));
        }
    }
    let mut all_groups = groups;
    if let Some((ns, _)) = user
        .strip_prefix("system:serviceaccount:")
        .and_then(|r| r.split_once(':'))
    {
        all_groups.push("system:serviceaccounts".into());
        all_groups.push(format!("system:serviceaccounts:{ns}"));
    }
    if user == "system:anonymous" {
        all_groups.push("system:unauthenticated".into());
    } else if !all_groups.iter().any(|g| g == "system:authenticated") {
        all_groups.push("system:authenticated".into());
    }
    let mut extra = std::collections::BTreeMap::<String, Vec<String>>::new();
    for (key, value) in extras {
        extra.entry(key).or_default().push(value);
    }
    Ok(UserInfo {
        name: user,
        groups: all_groups,
        uid: uid.unwrap_or_default(),
        extra,
    })
}
