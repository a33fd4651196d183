//! The phase engine: manifests → graph, the runner, journal, lock, the (dry-run) world of files
//! and the audit report.

pub mod context;
pub mod graph;
pub mod journal;
pub mod lock;
pub mod manifest;
pub mod parsed_once;
pub mod recorded_layout;
pub mod report;
pub mod runner;
pub mod world;

pub use context::Ctx;
pub use runner::{Command, Outcome, execute, execute_since};
