//! Upgrades: a database written by the schema before the delivery state left `events`
//! (PostgreSQL migrations up to 0005, SQLite up to 0004), with events in every status, is
//! migrated by hookd: what was waiting (pending, retry due, a lease that expired) is processed,
//! what was leased to a live worker is left to it, and finished events keep their status,
//! history, step results and body. Both stores.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Utc;
use hookd::event::{EventId, EventStatus, Outcome};
use hookd::store::admin::ReplayKind;
use hookd::store::{Claim, connect};
use uuid::Uuid;

use crate::support::*;

both_backends!(events_written_before_the_split_are_carried_over);

/// The last migration of the schema before the split.
fn last_old_version(b: Backend) -> i64 {
    match b {
        Backend::Postgres => 5,
        Backend::Sqlite => 4,
    }
}

/// One event as the old schema stored it.
struct Old {
    id: Uuid,
    key: &'static str,
    status: &'static str,
    attempts: i32,
    /// Seconds from now of `next_attempt_at` (the lease expiry while processing).
    due_in: i64,
    lease_owner: Option<&'static str>,
    last_error: Option<&'static str>,
    /// Transitions after `received`: (from, to, detail).
    history: &'static [(&'static str, &'static str, &'static str)],
}

fn old_events() -> Vec<Old> {
    let old = |key, status, attempts, due_in, lease_owner, last_error, history| Old {
        id: Uuid::now_v7(),
        key,
        status,
        attempts,
        due_in,
        lease_owner,
        last_error,
        history,
    };
    vec![
        old("evt_pending", "pending", 0, -60, None, None, &[]),
        old(
            "evt_retry_due",
            "retry_scheduled",
            1,
            -5,
            None,
            Some("boom"),
            &[
                ("pending", "processing", "attempt 1 by w1"),
                ("processing", "retry_scheduled", "retry: boom"),
            ],
        ),
        old(
            "evt_retry_later",
            "retry_scheduled",
            1,
            3600,
            None,
            Some("boom"),
            &[
                ("pending", "processing", "attempt 1 by w1"),
                ("processing", "retry_scheduled", "retry: boom"),
            ],
        ),
        old(
            "evt_lease_expired",
            "processing",
            1,
            -30,
            Some("dead-worker"),
            None,
            &[("pending", "processing", "attempt 1 by dead-worker")],
        ),
        old(
            "evt_lease_live",
            "processing",
            1,
            3600,
            Some("live-worker"),
            None,
            &[("pending", "processing", "attempt 1 by live-worker")],
        ),
        old(
            "evt_completed",
            "completed",
            1,
            -120,
            None,
            None,
            &[
                ("pending", "processing", "attempt 1 by w1"),
                ("processing", "completed", "log ok"),
            ],
        ),
        old(
            "evt_dead",
            "dead_letter",
            3,
            -120,
            None,
            Some("gave up"),
            &[
                ("pending", "processing", "attempt 3 by w1"),
                ("processing", "dead_letter", "dead-lettered: gave up"),
            ],
        ),
    ]
}

fn body(key: &str) -> Vec<u8> {
    format!("{{\"id\":\"{key}\",\"type\":\"charge.succeeded\"}}").into_bytes()
}

/// Apply the old migrations only and write `events` with the old columns.
async fn write_old_schema(db: &TestDb, events: &[Old]) {
    let old = last_old_version(db.backend);
    let now_ms = Utc::now().timestamp_millis();
    // A time `secs` from now, as each engine stores it.
    let at = |secs: i64| match db.backend {
        Backend::Postgres => format!("now() + make_interval(secs => {secs})"),
        Backend::Sqlite => (now_ms + secs * 1000).to_string(),
    };
    let mut statements: Vec<(String, Vec<Arg>)> = Vec::new();
    for e in events {
        statements.push((
            format!(
                "INSERT INTO events (id, provider, idempotency_key, event_type, content_type,
                     headers, body, received_at, status, attempts, next_attempt_at, lease_owner,
                     last_error, updated_at)
                 VALUES ($1, 'stripe', $2, 'charge.succeeded', 'application/json', '{{}}', $3,
                     {}, $4, $5, {}, $6, $7, {})",
                at(-600),
                at(e.due_in),
                at(-60)
            ),
            vec![
                Arg::Id(e.id),
                Arg::Text(e.key.into()),
                Arg::Bytes(body(e.key)),
                Arg::Text(e.status.into()),
                Arg::Int(e.attempts),
                Arg::MaybeText(e.lease_owner.map(Into::into)),
                Arg::MaybeText(e.last_error.map(Into::into)),
            ],
        ));
        let received = [(None, "pending", "received")];
        let later = e.history.iter().map(|(f, t, d)| (Some(*f), *t, *d));
        for (from, to, detail) in received.into_iter().chain(later) {
            statements.push((
                format!(
                    "INSERT INTO event_transitions (event_id, from_status, to_status, at, detail)
                     VALUES ($1, $2, $3, {}, $4)",
                    at(-300)
                ),
                vec![
                    Arg::Id(e.id),
                    Arg::MaybeText(from.map(Into::into)),
                    Arg::Text(to.into()),
                    Arg::Text(detail.into()),
                ],
            ));
        }
        if e.status == "completed" {
            statements.push((
                format!(
                    "INSERT INTO step_results (event_id, step, attempt, outcome, duration_ms, at)
                     VALUES ($1, 'log', 1, 'succeeded', 3, {})",
                    at(-200)
                ),
                vec![Arg::Id(e.id)],
            ));
        }
    }
    match db.backend {
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            let mut m = sqlx::migrate!("migrations/postgres");
            m.migrations = m
                .migrations
                .iter()
                .filter(|x| x.version <= old)
                .cloned()
                .collect();
            m.run(&pool).await.unwrap();
            for (sql, args) in statements {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for a in args {
                    q = match a {
                        Arg::Id(v) => q.bind(v),
                        Arg::Text(v) => q.bind(v),
                        Arg::MaybeText(v) => q.bind(v),
                        Arg::Bytes(v) => q.bind(v),
                        Arg::Int(v) => q.bind(v),
                    };
                }
                q.execute(&pool).await.unwrap();
            }
            pool.close().await;
        }
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&format!("{}?mode=rwc", db.url))
                .await
                .unwrap();
            let mut m = sqlx::migrate!("migrations/sqlite");
            m.migrations = m
                .migrations
                .iter()
                .filter(|x| x.version <= old)
                .cloned()
                .collect();
            m.run(&pool).await.unwrap();
            for (sql, args) in statements {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for a in args {
                    q = match a {
                        Arg::Id(v) => q.bind(v),
                        Arg::Text(v) => q.bind(v),
                        Arg::MaybeText(v) => q.bind(v),
                        Arg::Bytes(v) => q.bind(v),
                        Arg::Int(v) => q.bind(v),
                    };
                }
                q.execute(&pool).await.unwrap();
            }
            pool.close().await;
        }
    }
}

/// A bound value of the old rows.
enum Arg {
    Id(Uuid),
    Text(String),
    MaybeText(Option<String>),
    Bytes(Vec<u8>),
    Int(i32),
}

async fn events_written_before_the_split_are_carried_over(b: Backend) {
    let db = TestDb::new(b).await;
    let old = old_events();
    write_old_schema(&db, &old).await;
    let by_key = |k: &str| EventId(old.iter().find(|e| e.key == k).unwrap().id);

    // hookd's own migrations take the database the rest of the way.
    let store = connect(&db.url, 4, Duration::from_secs(10)).await.unwrap();
    store.migrate().await.unwrap();

    // Every event kept its state, history and body.
    for e in &old {
        let d = store.event(EventId(e.id)).await.unwrap().unwrap();
        assert_eq!(d.status.as_str(), e.status, "{}", e.key);
        assert_eq!(d.attempts, e.attempts as u32, "{}", e.key);
        assert_eq!(d.last_error.as_deref(), e.last_error, "{}", e.key);
        assert_eq!(d.transitions.len(), 1 + e.history.len(), "{}", e.key);
        assert_eq!(d.body_bytes, body(e.key).len(), "{}", e.key);
        let payload = store.event_payload(EventId(e.id)).await.unwrap().unwrap();
        assert_eq!(payload.body, body(e.key), "{}", e.key);
    }
    let completed = store.event(by_key("evt_completed")).await.unwrap().unwrap();
    assert_eq!(completed.steps.len(), 1);
    assert_eq!(
        store
            .succeeded_steps(by_key("evt_completed"))
            .await
            .unwrap(),
        vec!["log".to_owned()]
    );
    let backlog = store.backlog().await.unwrap();
    assert_eq!(backlog.by_status.get(&EventStatus::Pending), Some(&1));
    assert_eq!(
        backlog.by_status.get(&EventStatus::RetryScheduled),
        Some(&2)
    );
    assert_eq!(backlog.by_status.get(&EventStatus::Processing), Some(&2));
    assert_eq!(backlog.by_status.get(&EventStatus::DeadLetter), Some(&1));

    // What was waiting is claimed: pending, the retry that is due, the expired lease; not the
    // retry still ahead nor the event a live worker holds.
    let lease = Duration::from_secs(30);
    let claimed = store
        .claim("upgraded", lease, Claim::Due { limit: 100 })
        .await
        .unwrap();
    let keys: BTreeSet<&str> = claimed.iter().map(|c| c.idempotency_key.as_str()).collect();
    assert_eq!(
        keys,
        BTreeSet::from(["evt_pending", "evt_retry_due", "evt_lease_expired"])
    );
    for c in &claimed {
        let e = old.iter().find(|e| e.id == c.id.0).unwrap();
        assert_eq!(c.attempt, e.attempts as u32 + 1, "{}", e.key);
        assert_eq!(c.body, body(e.key));
        assert_eq!(c.generation, 0);
    }
    let ids: Vec<EventId> = claimed.iter().map(|c| c.id).collect();
    let held = store.renew_leases(&ids, "upgraded", lease).await.unwrap();
    assert_eq!(held.len(), ids.len(), "{held:?}");
    for id in &ids {
        let done = Outcome::Completed {
            detail: "log ok".into(),
        };
        assert!(store.finish(*id, "upgraded", &done).await.unwrap());
        let d = store.event(*id).await.unwrap().unwrap();
        assert_eq!(d.status, EventStatus::Completed);
        assert_eq!(d.transitions.last().unwrap().to, EventStatus::Completed);
    }
    let expired = store
        .event(by_key("evt_lease_expired"))
        .await
        .unwrap()
        .unwrap();
    let detail = expired.transitions[2].detail.clone().unwrap_or_default();
    assert!(detail.contains("previous lease expired"), "{detail}");

    // The dead letter can be redriven, and runs as a new generation.
    let dead = by_key("evt_dead");
    let redriven = store
        .replay(&[dead], ReplayKind::Redrive, "operator")
        .await
        .unwrap();
    assert_eq!(redriven, vec![dead]);
    let again = store
        .claim("upgraded", lease, Claim::Events(vec![dead]))
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].attempt, again[0].generation), (1, 1));

    // Finished events stay as they were; the body of a finished event can only be purged.
    let completed_after = store.event(by_key("evt_completed")).await.unwrap().unwrap();
    assert_eq!(completed_after.status, EventStatus::Completed);
    assert_eq!(
        completed_after.transitions.len(),
        completed.transitions.len()
    );
    let long_ago = Utc::now() - chrono::Duration::days(1);
    let (purged, _) = store
        .purge_payloads(long_ago, Utc::now(), 100)
        .await
        .unwrap();
    // The completed ones: the old one and the three just processed.
    assert_eq!(purged, 4);
    let live = store
        .event(by_key("evt_lease_live"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(live.status, EventStatus::Processing);
    assert!(live.body_purged_at.is_none());
    check_body_immutable(&db, by_key("evt_lease_live")).await;
}

/// The database itself still refuses to change a stored body.
async fn check_body_immutable(db: &TestDb, id: EventId) {
    let err = match db.backend {
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            sqlx::query("UPDATE events SET body = '\\x00' WHERE id = $1")
                .bind(id.0)
                .execute(&pool)
                .await
                .unwrap_err()
        }
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            sqlx::query("UPDATE events SET body = X'00' WHERE id = ?1")
                .bind(id.0)
                .execute(&pool)
                .await
                .unwrap_err()
        }
    };
    assert!(err.to_string().contains("immutable"), "{err}");
}
