//! The SQL core both engines share: statements written once, with `$n` placeholders (SQLite
//! reads them as well as PostgreSQL does), bound through [`Sql`], and rows decoded through
//! [`Record`], with [`Time`] hiding how each engine stores a timestamp.
//!
//! An engine implements [`Engine`]: how to run a statement, plus the few statements that really
//! differ (inserts, claims, locking, migrations). Every store trait is then implemented here,
//! once, for any engine. This module must never hold engine-specific SQL outside the
//! [`Dialect`] switch, and never decide anything about HTTP.

mod bind;
mod config;
mod operator;
pub mod order;
mod reads;
mod work;

pub use bind::{Driver, Record, Sql, Time};
pub use work::{claimed, insert_step, outcome_texts, renew_leases, renewed};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::admin::ReplayKind;
use super::{EventStore, Intake, Leases, StoreError};
use crate::event::EventId;

/// Where the two engines' SQL differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    Sqlite,
}

impl Dialect {
    /// `postgres` or `sqlite`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Sqlite => "sqlite",
        }
    }
}

/// Whether a statement reads or writes: SQLite runs reads on a pool beside its one writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Read,
    Write,
}

/// What an engine provides: how to run a statement, and the statements that really differ
/// between engines: its inserts ([`Intake`]), claims and leases ([`Leases`]) directly, replays
/// and purges here. Every other store trait is implemented from this, once.
#[async_trait]
pub trait Engine: Intake + Leases + 'static {
    type Row: Record;
    const DIALECT: Dialect;

    /// Run a statement on `side`; returns the rows it returns.
    async fn rows(&self, q: Sql, side: Side) -> Result<Vec<Self::Row>, StoreError>;
    /// Run a write; returns how many rows it changed.
    async fn write(&self, q: Sql) -> Result<u64, StoreError>;

    /// Run a read.
    async fn read(&self, q: Sql) -> Result<Vec<Self::Row>, StoreError> {
        self.rows(q, Side::Read).await
    }

    /// Run a write that returns rows (`RETURNING`).
    async fn write_rows(&self, q: Sql) -> Result<Vec<Self::Row>, StoreError> {
        self.rows(q, Side::Write).await
    }

    async fn migrate(&self) -> Result<(), StoreError>;
    async fn missing_migrations(&self) -> Result<Vec<i64>, StoreError>;
    async fn replay(
        &self,
        ids: &[EventId],
        kind: ReplayKind,
        actor: &str,
    ) -> Result<Vec<EventId>, StoreError>;
    async fn purge_payloads(
        &self,
        after: DateTime<Utc>,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<(u64, Option<DateTime<Utc>>), StoreError>;
    /// [`crate::store::Operator::skip_in_line`], in a transaction of the engine's own.
    async fn skip_in_line(
        &self,
        id: EventId,
        actor: &str,
    ) -> Result<Option<Vec<EventId>>, StoreError>;
}

#[async_trait]
impl<E: Engine> EventStore for E {
    fn backend(&self) -> &'static str {
        E::DIALECT.name()
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        Engine::migrate(self).await
    }

    async fn missing_migrations(&self) -> Result<Vec<i64>, StoreError> {
        Engine::missing_migrations(self).await
    }
}

/// SQL for the id of the transition that started the event's current replay generation (0 when
/// never replayed): a replay is the only way out of `completed` or `dead_letter`.
pub fn since_replay(event_id: &str) -> String {
    format!(
        "COALESCE((SELECT max(r.id) FROM event_transitions r WHERE r.event_id = {event_id}
                   AND r.from_status IN ('completed', 'dead_letter')), 0)"
    )
}

/// Detail of the transition written when a shutdown hands an attempt back.
pub const RELEASED: &str = "lease released at shutdown; attempt not counted";

/// The statuses an event is waiting or being worked on in.
pub const UNFINISHED: &str = "('pending', 'processing', 'retry_scheduled', 'compensating')";
