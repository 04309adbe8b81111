//! A relay pass in progress: what it counted, and the first error it went on past.

use super::{RelayError, RelayReport};
use crate::outbox::{StoreError, Written};

/// A relay pass in progress: its report, and the first error it carried on
/// past.
#[derive(Debug, Default)]
pub(super) struct Pass {
    pub(super) report: RelayReport,
    pub(super) first_error: Option<StoreError>,
}

impl Pass {
    /// A batch not started for lack of time: its rows are left due.
    pub(super) fn left(rows: usize) -> Pass {
        let mut pass = Pass::default();
        pass.report.left_due = rows;
        pass
    }

    /// A pass that did nothing but meet `error` (the caller logs it).
    pub(super) fn failed(error: StoreError) -> Pass {
        let mut pass = Pass::default();
        pass.error(error);
        pass
    }

    /// Counts an error the pass goes on past (the caller logs it).
    pub(super) fn error(&mut self, error: StoreError) {
        self.report.errors += 1;
        self.first_error.get_or_insert(error);
    }

    /// Counts what became of one row's state change: written, taken over
    /// by another relay, or an error.
    pub(super) fn outcome(&mut self, id: &str, written: Result<Written, StoreError>) {
        match written {
            Ok(Written::Yes) => {}
            Ok(Written::ConditionFailed) => {
                tracing::warn!(outbox_id = %id, "row changed hands before it was marked; the other relay will send it");
                self.report.lost_lease += 1;
            }
            Err(error) => {
                tracing::error!(outbox_id = %id, %error, "outbox row not marked; it is due again later");
                self.error(error);
            }
        }
    }

    pub(super) fn finish(self) -> Result<RelayReport, RelayError> {
        match self.first_error {
            None => Ok(self.report),
            Some(first) => Err(RelayError {
                report: self.report,
                first,
            }),
        }
    }
}

impl std::ops::AddAssign for Pass {
    fn add_assign(&mut self, other: Pass) {
        self.report += other.report;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}
