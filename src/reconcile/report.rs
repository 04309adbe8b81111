//! What reconcile reports: a participant's class and the whole answer.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use crate::outbox::Status;

/// What reconcile found for one participant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// A DELIVERED row: the participant is on the topic.
    Delivered,
    /// A PENDING or IN_FLIGHT row: the relay has it.
    Pending,
    /// A FAILED row: an operator must look (`audit participant`, `redrive`).
    Failed,
    /// A REJECTED row: the record could not become a message (its reason is on the row).
    Rejected,
    /// No row, saved within the grace window: its stream record may still come.
    Young,
    /// No row: the participant would never reach the topic.
    Missing,
}

impl Class {
    /// Every class, in report order.
    pub const ALL: [Class; 6] = [
        Class::Delivered,
        Class::Pending,
        Class::Failed,
        Class::Rejected,
        Class::Young,
        Class::Missing,
    ];

    /// The class's name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Delivered => "delivered",
            Class::Pending => "pending",
            Class::Failed => "failed",
            Class::Rejected => "rejected",
            Class::Young => "young",
            Class::Missing => "missing",
        }
    }
}

/// The whole answer, one object (`--json`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Participants looked at (in the window).
    pub participants: u64,
    /// Participants per class (every class present, 0 when none).
    pub classes: BTreeMap<Class, u64>,
    /// Missing participants' ids, the first [`super::MISSING_IDS_KEPT`].
    pub missing_ids: Vec<String>,
    /// Whether more ids were missing than `missing_ids` lists.
    pub missing_ids_truncated: bool,
    /// Rows `--repair` wrote (0 on a dry run).
    pub repaired: u64,
    /// Rows a repair found already written (a concurrent or earlier repair).
    pub repair_already_there: u64,
    /// `--verify`: the DELIVERED rows checked against the topic.
    pub verify: Option<crate::verify::Report>,
    /// Scan segments read concurrently.
    pub segments: u64,
    /// Wall time, seconds.
    pub seconds: f64,
}

impl Report {
    /// Participants in `class`.
    pub fn count(&self, class: Class) -> u64 {
        self.classes.get(&class).copied().unwrap_or(0)
    }

    /// Missing participants that no repair gave a row.
    pub fn unrepaired(&self) -> u64 {
        self.count(Class::Missing)
            .saturating_sub(self.repaired + self.repair_already_there)
    }

    /// Nothing missing (or every missing participant repaired) and, with
    /// `--verify`, every DELIVERED row's message where the row says.
    pub fn is_clean(&self) -> bool {
        self.unrepaired() == 0 && self.verify.is_none_or(|v| v.is_clean())
    }

    /// The summary table printed after the missing ids.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for class in Class::ALL {
            out.push_str(&format!("  {:<10} {}\n", class.as_str(), self.count(class)));
        }
        out.push_str(&format!(
            "{} participants reconciled in {:.1} s ({:.0}/s, {} scan segments)\n",
            self.participants,
            self.seconds,
            self.participants as f64 / self.seconds.max(0.001),
            self.segments
        ));
        if self.repaired + self.repair_already_there > 0 {
            out.push_str(&format!(
                "repaired: {} PENDING row(s) written ({} already there); the relay sends them\n",
                self.repaired, self.repair_already_there
            ));
        }
        if let Some(v) = &self.verify {
            out.push_str(&format!("verify: {v}\n"));
        }
        out
    }
}

/// The class of a participant from its outbox rows' states; `registered_at`
/// decides between young and missing when there is no row.
pub fn classify(
    statuses: &[Status],
    registered_at: Option<OffsetDateTime>,
    now: OffsetDateTime,
    grace: Duration,
) -> Class {
    let has = |wanted: &[Status]| statuses.iter().any(|s| wanted.contains(s));
    if has(&[Status::Delivered]) {
        Class::Delivered
    } else if has(&[Status::Pending, Status::InFlight]) {
        Class::Pending
    } else if has(&[Status::Failed]) {
        Class::Failed
    } else if has(&[Status::Rejected]) {
        Class::Rejected
    } else if registered_at.is_some_and(|at| now - at < grace) {
        Class::Young
    } else {
        Class::Missing
    }
}
