//! Payload retention: `HOOKD_RETENTION_DAYS` purges the bodies of finished events received
//! longer ago than that, keeps everything else, and the database still refuses any other change
//! to a body. Both stores.

use std::time::Duration;

use crate::support::*;
use hookd::event::{EventId, EventStatus};
use reqwest::StatusCode;
use sqlx::Connection;

const WAIT: Duration = Duration::from_secs(20);

both_backends!(old_finished_payloads_are_purged_and_nothing_else);

/// Run one statement about event `id` directly on the test database (`sql` has one parameter,
/// the id: `$1` on PostgreSQL, `?1` on SQLite).
async fn exec(db: &TestDb, pg: &str, sqlite: &str, id: EventId) -> Result<u64, sqlx::Error> {
    match db.backend {
        Backend::Postgres => {
            let mut c = sqlx::PgConnection::connect(&db.url).await.unwrap();
            let r = sqlx::query(sqlx::AssertSqlSafe(pg.to_owned()))
                .bind(id.0)
                .execute(&mut c)
                .await?;
            Ok(r.rows_affected())
        }
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            let r = sqlx::query(sqlx::AssertSqlSafe(sqlite.to_owned()))
                .bind(id.0)
                .execute(&mut c)
                .await?;
            Ok(r.rows_affected())
        }
    }
}

async fn backdate(db: &TestDb, id: EventId, days: i64) {
    let n = exec(
        db,
        &format!(
            "UPDATE events SET received_at = received_at - interval '{days} days' WHERE id = $1"
        ),
        &format!("UPDATE events SET received_at = received_at - {days} * 86400000 WHERE id = ?1"),
        id,
    )
    .await
    .unwrap();
    assert_eq!(n, 1);
}

async fn old_finished_payloads_are_purged_and_nothing_else(b: Backend) {
    let db = TestDb::new(b).await;
    let failing = Target::start(Behaviour {
        always_fail: true,
        ..Default::default()
    })
    .await;
    let routes = format!(
        "[[routes]]\nprovider = \"stripe\"\nevents = [\"invoice.*\"]\nsteps = [{{ action = \"forward\", url = \"{}\" }}]\n",
        failing.url
    );
    let extra = [("HOOKD_MAX_ATTEMPTS", "1")];
    let server = TestServer::start(&db, &routes, &extra).await;
    let post = |t: &'static str| {
        let server = &server;
        async move {
            let (_, body) = stripe_event(t);
            (id_of(server.post_stripe(&body).await).await, body)
        }
    };
    let (old_done, _) = post("charge.succeeded").await;
    let (old_dead, _) = post("invoice.payment_failed").await;
    let (new_done, new_body) = post("charge.succeeded").await;
    server
        .wait_status(old_done, EventStatus::Completed, WAIT)
        .await;
    server
        .wait_status(old_dead, EventStatus::DeadLetter, WAIT)
        .await;
    server
        .wait_status(new_done, EventStatus::Completed, WAIT)
        .await;
    // One old event still waiting (its provider is paused): not finished, so kept.
    let r = server.admin_post("/providers/stripe/pause", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let (old_waiting, _) = post("charge.succeeded").await;
    server.stop().await;
    for id in [old_done, old_dead, old_waiting] {
        backdate(&db, id, 40).await;
    }

    // A pass runs at start.
    let server = TestServer::start(&db, &routes, &[extra[0], ("HOOKD_RETENTION_DAYS", "30")]).await;
    eventually(
        "the old dead letter's payload to be purged",
        WAIT,
        || server.event(old_dead),
        |e| e.body_purged_at.is_some(),
    )
    .await;
    for id in [old_done, old_dead] {
        let e = server.event(id).await;
        assert_eq!(e.body_bytes, 0);
        assert!(e.body_purged_at.is_some());
        // Metadata and history stay.
        assert!(e.transitions.len() >= 3);
        let v = server.admin_get(&format!("/events/{id}")).await;
        assert!(v["body"].is_null());
        assert_eq!(v["headers"]["stripe-signature"], "[redacted]");
        assert!(v["idempotency_key"].as_str().unwrap().starts_with("evt_"));
    }
    assert_eq!(server.event(old_dead).await.status, EventStatus::DeadLetter);
    let kept = server.event(new_done).await;
    assert_eq!(
        (kept.body_bytes, kept.body_purged_at),
        (new_body.len(), None)
    );
    let waiting = server.event(old_waiting).await;
    assert!(waiting.body_bytes > 0 && waiting.body_purged_at.is_none());

    // Nothing is left to replay.
    let r = server
        .admin_post(&format!("/dlq/{old_dead}/redrive"), None)
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"], "payload_purged");

    // The body trigger still refuses every other change.
    let refused = [
        (
            "UPDATE events SET body = 'x' WHERE id = $1",
            "UPDATE events SET body = X'78' WHERE id = ?1",
            new_done,
        ),
        // Emptied without the purge marker.
        (
            "UPDATE events SET body = ''::bytea WHERE id = $1",
            "UPDATE events SET body = X'' WHERE id = ?1",
            new_done,
        ),
        // Purged while not finished.
        (
            "UPDATE events SET body = ''::bytea, body_purged_at = now() WHERE id = $1",
            "UPDATE events SET body = X'', body_purged_at = 1 WHERE id = ?1",
            old_waiting,
        ),
        // A purge cannot be undone or moved.
        (
            "UPDATE events SET body_purged_at = NULL WHERE id = $1",
            "UPDATE events SET body_purged_at = NULL WHERE id = ?1",
            old_done,
        ),
        (
            "UPDATE events SET body = 'back' WHERE id = $1",
            "UPDATE events SET body = X'6261636b' WHERE id = ?1",
            old_done,
        ),
    ];
    for (pg, sqlite, id) in refused {
        let e = exec(&db, pg, sqlite, id).await.expect_err(pg).to_string();
        assert!(e.contains("events.body"), "{pg}: {e}");
    }
    server.stop().await;
}
