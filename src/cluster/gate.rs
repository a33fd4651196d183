//! The gate every request of a run passes: it holds the running phase to the requests its
//! manifest declares (a done-check only to reads) and records each one for the report.

use std::sync::Mutex;

use crate::engine::manifest::RequestDecl;
use crate::engine::report::RequestRecord;
use crate::error::{Error, Result};

/// Holds the running phase to its declared requests and records every request.
#[derive(Debug, Default)]
pub struct Gate {
    state: Mutex<GateState>,
}

#[derive(Debug, Default)]
struct GateState {
    phase: String,
    allowed: Vec<RequestDecl>,
    records: Vec<RequestRecord>,
    // A check (done-or-not) runs outside a phase's action and may only read.
    read_only: bool,
    // Outside the engine (the cluster-side commands): no phase contract applies.
    open: bool,
}

impl Gate {
    /// A gate for the cluster-side commands (`token`, `approver`), which run no phase: every
    /// request passes; none is recorded.
    pub fn open() -> Gate {
        let gate = Gate::default();
        gate.state.lock().expect("gate lock").open = true;
        gate
    }

    /// Starts holding requests to `phase`'s declarations.
    pub fn enter(&self, phase: &str, allowed: Vec<RequestDecl>, read_only: bool) {
        let mut s = self.state.lock().expect("gate lock");
        s.phase = phase.to_string();
        s.allowed = allowed;
        s.read_only = read_only;
    }

    /// Stops, returning what was recorded since `enter`.
    pub fn leave(&self) -> Vec<RequestRecord> {
        let mut s = self.state.lock().expect("gate lock");
        s.phase.clear();
        s.allowed.clear();
        std::mem::take(&mut s.records)
    }

    pub(super) fn admit(&self, verb: &str, resource: &str) -> Result<()> {
        let s = self.state.lock().expect("gate lock");
        if s.open {
            return Ok(());
        }
        let declared = s
            .allowed
            .iter()
            .any(|r| r.verb == verb && r.resource == resource);
        if !declared {
            return Err(Error::internal(format!(
                "phase {:?} tried to {verb} {resource}, which phases/{}.toml does not declare; this is a bug in bootlet",
                s.phase, s.phase
            )));
        }
        if s.read_only && !matches!(verb, "get" | "list" | "watch") {
            return Err(Error::internal(format!(
                "the done-check of phase {:?} tried to {verb} {resource}; checks may only read",
                s.phase
            )));
        }
        Ok(())
    }

    /// The running phase (for notices), or "".
    pub fn phase_name(&self) -> String {
        let s = self.state.lock().expect("gate lock");
        s.phase.rsplit('/').next().unwrap_or_default().to_string()
    }

    pub(super) fn record(&self, rec: RequestRecord) {
        let mut s = self.state.lock().expect("gate lock");
        if !s.open {
            s.records.push(rec);
        }
    }
}
