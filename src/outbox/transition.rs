//! Every state change of an outbox row, named: the only writes the outbox
//! table gets. Each is one conditional write on the row's current state, so
//! a retried batch, a second relay or a late redrive can never move a row
//! the wrong way; a condition that does not hold writes nothing and is
//! answered [`super::Written::ConditionFailed`].
//!
//! | transition | from → to | condition | written by |
//! |---|---|---|---|
//! | insert | (none) → PENDING or REJECTED | no row with the id | [`OutboxStore::insert`](super::OutboxStore::insert), [`OutboxStore::insert_all`](super::OutboxStore::insert_all) |
//! | claim | PENDING (due, or new past the sweep delay) or IN_FLIGHT (lease over) → IN_FLIGHT | due, stale, or lease expired | [`OutboxStore::claim`](super::OutboxStore::claim) |
//! | delivered | IN_FLIGHT or fresh PENDING → DELIVERED | [`Holder`] holds it | [`OutboxStore::mark_delivered_all`](super::OutboxStore::mark_delivered_all) |
//! | retry | IN_FLIGHT or fresh PENDING → PENDING | [`Holder`] holds it | [`OutboxStore::mark_retry`](super::OutboxStore::mark_retry) (attempt spent), [`OutboxStore::mark_wait`](super::OutboxStore::mark_wait) (attempt given back, one more wait) |
//! | failed | IN_FLIGHT or fresh PENDING → FAILED | [`Holder`] holds it | [`OutboxStore::mark_failed`](super::OutboxStore::mark_failed), [`OutboxStore::mark_failed_unsent`](super::OutboxStore::mark_failed_unsent) |
//! | redrive | FAILED → PENDING | FAILED with the attempts the operator saw | [`OutboxStore::redrive`](super::OutboxStore::redrive) |
//! | expiry | DELIVERED → DELIVERED (`expires_at` set or removed) | DELIVERED | [`OutboxStore::set_expiry`](super::OutboxStore::set_expiry) |
//!
//! A transition is one UpdateItem (or PutItem) request: one write unit per
//! KB of the row on the table, and one on each index whose entry it changes
//! (two when it changes the index's key). No transition is written in a
//! transaction: TransactWriteItems bills every item twice.
//!
//! The in-memory twins ([`OutboxRow::into_delivered`],
//! [`OutboxRow::into_failed`]) give the row a transition leaves, for seeding
//! tables (the benchmark, the tests) without a relay.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodb::Client;
use time::OffsetDateTime;

use super::row::{due_shard, epoch_ms, rfc3339, OutboxRow, Status, Stored};
use super::schema::{EXPIRES_AT, ID};
use super::store::{n, s};

/// Who may move an IN_FLIGHT-or-new row on: the condition every state change
/// of the relay is written under.
#[derive(Debug, Clone, Copy)]
pub enum Holder<'a> {
    /// The relay that claimed the row (the sweep path) and holds its lease.
    Lease(&'a str),
    /// The relay the outbox stream handed the new row to: it owns the row
    /// while it is PENDING and untouched (`attempts = 0` and no `waits`);
    /// the sweep leaves such rows alone until `SWEEP_DELAY_SECONDS` have
    /// passed. A fresh row whose send failed is no longer untouched (an
    /// attempt, or a wait, is written with the failure), so a redelivered
    /// stream batch cannot send it beside the sweep.
    Fresh,
}

/// What a transition records the send as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Spent {
    /// One attempt: a claimed row keeps the one its claim counted, a fresh
    /// row gets `attempts = 1`.
    Attempt,
    /// A wait, not an attempt: a claimed row gets its claim's attempt back,
    /// and `waits` counts one more.
    Wait,
    /// Nothing was sent: a claimed row gets its claim's attempt back.
    Nothing,
}

/// The condition of an insert: no row with the id yet.
pub(super) const INSERT_CONDITION: &str = "attribute_not_exists(id)";

/// A transition's PartiQL text and its placeholders' names, in order
/// ([`Transition::statement_shape`]).
#[derive(Debug)]
pub(super) struct StatementShape {
    pub(super) text: String,
    pub(super) placeholders: Vec<String>,
}

/// One conditional state change of a row: one UpdateItem.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Transition {
    pub(super) id: String,
    pub(super) update: String,
    pub(super) condition: String,
    pub(super) names: HashMap<String, String>,
    pub(super) values: HashMap<String, AttributeValue>,
}

impl Transition {
    /// The condition and the bookkeeping every transition of `holder`
    /// carries, with `spent` written as that enum says.
    fn held(id: &str, holder: Holder<'_>, set: &str, remove: &[&str], spent: Spent) -> Transition {
        let mut values = HashMap::new();
        let mut set = set.to_string();
        let mut remove = remove.to_vec();
        let mut add = Vec::new();
        let condition = match holder {
            Holder::Lease(owner) => {
                values.insert(":held_status".to_string(), s(Status::InFlight.as_str()));
                values.insert(":me".to_string(), s(owner));
                remove.extend(["lease_owner", "lease_until"]);
                if spent != Spent::Attempt {
                    values.insert(":minus_one".to_string(), n(-1));
                    add.push("attempts :minus_one");
                }
                "#status = :held_status AND lease_owner = :me"
            }
            Holder::Fresh => {
                values.insert(":held_status".to_string(), s(Status::Pending.as_str()));
                values.insert(":zero".to_string(), n(0));
                if spent == Spent::Attempt {
                    values.insert(":one".to_string(), n(1));
                    set.push_str(", attempts = :one");
                }
                "#status = :held_status AND attempts = :zero \
                 AND (attribute_not_exists(waits) OR waits = :zero)"
            }
        };
        if spent == Spent::Wait {
            values.insert(":one_wait".to_string(), n(1));
            add.push("waits :one_wait");
        }
        let mut update = format!("SET {set}");
        if !remove.is_empty() {
            update.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        if !add.is_empty() {
            update.push_str(&format!(" ADD {}", add.join(", ")));
        }
        Transition::new(id, update, condition, values)
    }

    fn new(
        id: &str,
        update: impl Into<String>,
        condition: impl Into<String>,
        values: HashMap<String, AttributeValue>,
    ) -> Transition {
        Transition {
            id: id.to_string(),
            update: update.into(),
            condition: condition.into(),
            names: HashMap::from([("#status".to_string(), "status".to_string())]),
            values,
        }
    }

    /// Claim: IN_FLIGHT under `owner`'s lease until `lease_until` (epoch
    /// ms), one attempt counted in advance, due again at the lease's end; if
    /// the row is PENDING and due at `now` (epoch ms), or IN_FLIGHT under a
    /// lease that ended before `now`, or PENDING and new (no `due_at`)
    /// since `stale_before` (RFC 3339, as `created_at`: its stream record
    /// was lost or not handled within the sweep delay).
    pub(super) fn claim(
        id: &str,
        owner: &str,
        now: i64,
        stale_before: &str,
        lease_until: i64,
    ) -> Transition {
        Transition::new(
            id,
            "SET #status = :in_flight, lease_owner = :owner, lease_until = :until, due_at = :until \
             ADD attempts :one",
            "(#status = :pending AND due_at <= :now) OR (#status = :in_flight AND lease_until < :now) \
             OR (#status = :pending AND attribute_not_exists(due_at) AND created_at <= :stale)",
            HashMap::from([
                (":pending".to_string(), s(Status::Pending.as_str())),
                (":in_flight".to_string(), s(Status::InFlight.as_str())),
                (":now".to_string(), n(now)),
                (":stale".to_string(), s(stale_before)),
                (":owner".to_string(), s(owner)),
                (":until".to_string(), n(lease_until)),
                (":one".to_string(), n(1)),
            ]),
        )
    }

    /// DELIVERED with the broker's answer; with `expires_at` (retention,
    /// epoch seconds) the row also gets its TTL.
    pub(super) fn delivered(
        id: &str,
        holder: Holder<'_>,
        stored: &Stored,
        now: OffsetDateTime,
        expires_at: Option<i64>,
    ) -> Transition {
        let mut set = "#status = :delivered, kafka_topic = :topic, kafka_partition = :partition, \
             kafka_offset = :offset, kafka_timestamp = :timestamp, delivered_at = :now"
            .to_string();
        if expires_at.is_some() {
            set.push_str(", expires_at = :expires_at");
        }
        let mut t = Transition::held(id, holder, &set, &["due_shard", "due_at"], Spent::Attempt);
        t.values
            .extend(expires_at.map(|e| (":expires_at".to_string(), n(e))));
        t.values.extend([
            (":delivered".to_string(), s(Status::Delivered.as_str())),
            (":topic".to_string(), s(&stored.topic)),
            (":partition".to_string(), n(stored.partition)),
            (":offset".to_string(), n(stored.offset)),
            (":timestamp".to_string(), n(stored.timestamp)),
            (":now".to_string(), s(rfc3339(now))),
        ]);
        t
    }

    /// Back to PENDING, due at `due_at`: after a fault of the message
    /// (`Spent::Attempt`) or while the cluster is at fault (`Spent::Wait`).
    pub(super) fn retry(
        id: &str,
        holder: Holder<'_>,
        error: &str,
        due_at: i64,
        spent: Spent,
    ) -> Transition {
        let mut t = Transition::held(
            id,
            holder,
            "#status = :pending, last_error = :error, due_at = :due",
            &[],
            spent,
        );
        t.values.extend([
            (":pending".to_string(), s(Status::Pending.as_str())),
            (":error".to_string(), s(error)),
            (":due".to_string(), n(due_at)),
        ]);
        t
    }

    /// FAILED with `error`, out of the due index.
    pub(super) fn failed(id: &str, holder: Holder<'_>, error: &str, spent: Spent) -> Transition {
        let mut t = Transition::held(
            id,
            holder,
            "#status = :failed, last_error = :error",
            &["due_shard", "due_at"],
            spent,
        );
        t.values.extend([
            (":failed".to_string(), s(Status::Failed.as_str())),
            (":error".to_string(), s(error)),
        ]);
        t
    }

    /// FAILED → PENDING, if the row is still FAILED with `attempts_before`:
    /// attempts reset to 0, `redrive_count` + 1, an entry appended to
    /// `redrive_history`, back in the due index, due at `now`; `last_error`
    /// stays.
    pub(super) fn redrive(
        id: &str,
        attempts_before: u32,
        last_error: Option<&str>,
        now: OffsetDateTime,
    ) -> Transition {
        let mut entry = vec![
            ("at", s(rfc3339(now))),
            ("attempts_before", n(attempts_before)),
        ];
        if let Some(error) = last_error {
            entry.push(("last_error", s(error)));
        }
        let entry = AttributeValue::M(entry.into_iter().map(|(k, v)| (k.to_string(), v)).collect());
        Transition::new(
            id,
            "SET #status = :pending, attempts = :zero, due_shard = :shard, due_at = :now, \
             redrive_count = if_not_exists(redrive_count, :zero) + :one, \
             redrive_history = list_append(if_not_exists(redrive_history, :empty), :entry) \
             REMOVE lease_owner, lease_until",
            "#status = :failed AND attempts = :attempts_before",
            HashMap::from([
                (":failed".to_string(), s(Status::Failed.as_str())),
                (":pending".to_string(), s(Status::Pending.as_str())),
                (":attempts_before".to_string(), n(attempts_before)),
                (":zero".to_string(), n(0)),
                (":one".to_string(), n(1)),
                (":shard".to_string(), s(due_shard(id))),
                (":now".to_string(), n(epoch_ms(now))),
                (":empty".to_string(), AttributeValue::L(vec![])),
                (":entry".to_string(), AttributeValue::L(vec![entry])),
            ]),
        )
    }

    /// A DELIVERED row's `expires_at` set to `expires` (epoch seconds), or
    /// removed (`None`: kept forever), if it is still DELIVERED.
    pub(super) fn expiry(id: &str, expires: Option<i64>) -> Transition {
        let mut values = HashMap::from([(":delivered".to_string(), s(Status::Delivered.as_str()))]);
        let update = match expires {
            Some(at) => {
                values.insert(":at".to_string(), n(at));
                format!("SET {EXPIRES_AT} = :at")
            }
            None => format!("REMOVE {EXPIRES_AT}"),
        };
        Transition::new(id, update, "#status = :delivered", values)
    }

    /// The transition as one PartiQL `UPDATE` statement on `table`, for a
    /// BatchExecuteStatement (25 statements a request, each with its own
    /// condition and its own answer, billed as the UpdateItem would be):
    /// its text, the same for every transition of one kind, with its
    /// placeholders' names in order (a batch renders it once and takes each
    /// row's [`Transition::parameters`]). The same write, rendered
    /// mechanically: `SET` and `REMOVE` lists become one `SET`/`REMOVE`
    /// clause per attribute, the condition joins the key in `WHERE`,
    /// `attribute_not_exists(a)` becomes `a IS MISSING`, and each `:value`
    /// a `?` in order of appearance. `None` for an update PartiQL cannot
    /// say this way (`ADD`, functions in `SET`): those are written with
    /// UpdateItem.
    pub(super) fn statement_shape(&self, table: &str) -> Option<StatementShape> {
        let (set, remove) = match self.update.strip_prefix("SET ")?.split_once(" REMOVE ") {
            Some((set, remove)) => (set, Some(remove)),
            None => (self.update.strip_prefix("SET ")?, None),
        };
        if set.contains('(') || set.contains(" ADD ") || remove.is_some_and(|r| r.contains(" ADD "))
        {
            return None;
        }
        let mut text = format!("UPDATE \"{table}\"");
        for assignment in set.split(", ") {
            text.push_str(&format!(" SET {assignment}"));
        }
        for attribute in remove.into_iter().flat_map(|r| r.split(", ")) {
            text.push_str(&format!(" REMOVE {attribute}"));
        }
        let mut condition = self.condition.clone();
        while let Some(start) = condition.find("attribute_not_exists(") {
            let inner = start + "attribute_not_exists(".len();
            let end = inner + condition[inner..].find(')')?;
            let attribute = condition[inner..end].to_string();
            condition.replace_range(start..=end, &format!("{attribute} IS MISSING"));
        }
        text.push_str(&format!(" WHERE {ID} = :__id AND ({condition})"));
        for (name, attribute) in &self.names {
            text = text.replace(name.as_str(), &format!("\"{attribute}\""));
        }
        // Each `:value` becomes `?`, its name kept in the same order.
        let mut statement = String::with_capacity(text.len());
        let mut placeholders = Vec::new();
        let mut rest = text.as_str();
        while let Some(at) = rest.find(':') {
            statement.push_str(&rest[..at]);
            let name_len = rest[at + 1..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len() - at - 1);
            placeholders.push(rest[at..at + 1 + name_len].to_string());
            statement.push('?');
            rest = &rest[at + 1 + name_len..];
        }
        statement.push_str(rest);
        Some(StatementShape {
            text: statement,
            placeholders,
        })
    }

    /// This transition's values for `shape`'s placeholders, in order,
    /// moved out of it (copied where a placeholder comes again later);
    /// `None` if it lacks one (a transition of another kind).
    pub(super) fn into_parameters(mut self, shape: &StatementShape) -> Option<Vec<AttributeValue>> {
        let names = &shape.placeholders;
        (0..names.len())
            .map(|i| {
                let name = names[i].as_str();
                let again = names[i + 1..].iter().any(|later| later == name);
                match (name, again) {
                    (":__id", _) => Some(AttributeValue::S(std::mem::take(&mut self.id))),
                    (_, true) => self.values.get(name).cloned(),
                    (_, false) => self.values.remove(name),
                }
            })
            .collect()
    }

    /// The transition as one UpdateItem request on `table`.
    pub(super) fn update_item(&self, client: &Client, table: &str) -> UpdateItemFluentBuilder {
        client
            .update_item()
            .table_name(table)
            .key(ID, s(&self.id))
            .update_expression(&self.update)
            .condition_expression(&self.condition)
            .set_expression_attribute_names(Some(self.names.clone()))
            .set_expression_attribute_values(Some(self.values.clone()))
    }
}

impl OutboxRow {
    /// The row as the delivered transition leaves it, in memory (for seeding
    /// a table: the benchmark, the tests): DELIVERED with `stored`,
    /// `delivered_at` = `at`, `expires_at` as given, out of the due index,
    /// no lease, and the attempt counted (a fresh row's first; a claimed
    /// row's claim counted it already). Writes nothing.
    pub fn into_delivered(
        self,
        stored: &Stored,
        at: OffsetDateTime,
        expires_at: Option<i64>,
    ) -> OutboxRow {
        OutboxRow {
            status: Status::Delivered,
            attempts: self.attempts.max(1),
            kafka_topic: Some(stored.topic.clone()),
            kafka_partition: Some(stored.partition),
            kafka_offset: Some(stored.offset),
            kafka_timestamp: Some(stored.timestamp),
            delivered_at: Some(rfc3339(at)),
            expires_at: expires_at.or(self.expires_at),
            due_shard: None,
            due_at: None,
            lease_owner: None,
            lease_until: None,
            ..self
        }
    }

    /// The row as the failed transition leaves it after a send answered
    /// with a fault of the message, in memory (for seeding): FAILED with
    /// `error`, out of the due index, no lease, the attempt counted. Writes
    /// nothing.
    pub fn into_failed(self, error: &str) -> OutboxRow {
        OutboxRow {
            status: Status::Failed,
            attempts: self.attempts.max(1),
            last_error: Some(error.to_string()),
            due_shard: None,
            due_at: None,
            lease_owner: None,
            lease_until: None,
            ..self
        }
    }
}

#[cfg(test)]
#[path = "transition_tests.rs"]
mod tests;
