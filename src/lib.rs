//! bootlet joins machines to Kubernetes clusters as a graph of small, idempotent, auditable phases.
//!
//! The crate is laid out the way the tool works:
//! - [`engine`]: phase manifests → graph, the runner, journal, lock, dry-run world and audit report;
//! - [`phases`]: one module per phase, named as in `phases/*.toml`;
//! - [`cluster`]: kube client construction, retries, CSR create/re-attach/watch, request recording;
//! - [`pki`]: keys, CSRs, certificate checks, CA pins, detached JWS;
//! - [`files`]: the atomic writer and the two layouts;
//! - [`cli`] and [`app`]: the command line.

#![warn(missing_docs)]

pub mod admin;
pub mod app;
pub mod cli;
pub mod cli_docs;
pub mod cluster;
#[cfg(feature = "sandbox")]
pub mod demo;
pub mod docs;
pub mod engine;
pub mod error;
pub mod expiration;
pub mod files;
pub mod kubeconfig;
pub mod output;
pub mod phases;
pub mod pki;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod secret;
pub mod settings;
pub mod token;
pub mod watch;
