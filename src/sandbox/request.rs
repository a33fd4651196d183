//! The request being served, as the resource handlers see it: who asks, what it points at, and
//! its query.

use std::sync::Arc;

use super::authn::UserInfo;
use super::http::Query;
use super::resources::ResourceDef;
use super::state::State;

/// Where a resource request points.
#[derive(Debug, Clone)]
pub struct Target {
    /// The resource.
    pub def: &'static ResourceDef,
    /// Namespace, or "".
    pub namespace: String,
    /// Object name, or "" for collections.
    pub name: String,
    /// Subresource, or "".
    pub subresource: String,
}

/// One resource request.
pub struct Call<'a> {
    /// Server state.
    pub state: &'a Arc<State>,
    /// The (effective) user.
    pub user: &'a UserInfo,
    /// What it points at.
    pub target: &'a Target,
    /// The query string.
    pub query: &'a Query,
}

impl Call<'_> {
    /// The resource.
    pub fn def(&self) -> &'static ResourceDef {
        self.target.def
    }
}
