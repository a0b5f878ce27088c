//! Group commit over real HTTP, against SQLite and PostgreSQL: many concurrent inserts share
//! transactions, yet every request gets the answer it would have got alone. A long batch
//! window makes shared batches near certain; the assertions hold however requests are grouped.

use std::collections::{BTreeMap, BTreeSet};

use crate::support::*;
use hookd::event::{EventId, EventStatus};
use reqwest::StatusCode;

both_backends!(
    concurrent_new_and_duplicate_events_make_one_row_each,
    a_batch_fails_whole_with_503_while_the_store_is_down,
    one_refused_event_does_not_fail_its_batch,
);

/// Batches wait up to 20 ms for company, so concurrent requests share them.
const GROUPED: &[(&str, &str)] = &[
    ("HOOKD_BATCH_WINDOW_US", "20000"),
    ("HOOKD_BATCH_MAX", "64"),
];

async fn send_all(
    server: &TestServer,
    bodies: Vec<String>,
) -> Vec<(StatusCode, serde_json::Value)> {
    let sends: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let (http, url) = (server.http.clone(), server.url.clone());
            tokio::spawn(async move {
                let r = stripe_request(&http, &url, &body).send().await.unwrap();
                let status = r.status();
                (status, r.json::<serde_json::Value>().await.unwrap())
            })
        })
        .collect();
    let mut out = Vec::new();
    for s in sends {
        out.push(s.await.unwrap());
    }
    out
}

async fn concurrent_new_and_duplicate_events_make_one_row_each(b: Backend) {
    let db = TestDb::new(b).await;
    let server = TestServer::start(&db, "", GROUPED).await;
    // 60 events, each sent three times, all at once and interleaved.
    let events: Vec<(String, String)> = (0..60)
        .map(|_| stripe_event("payment_intent.succeeded"))
        .collect();
    let copies: Vec<&String> = (0..3).flat_map(|_| events.iter().map(|(_, b)| b)).collect();
    // A fixed shuffle (7 is coprime with 180): copies of one event land far apart or together.
    let bodies: Vec<String> = (0..copies.len())
        .map(|i| copies[(i * 7) % copies.len()].clone())
        .collect();
    let answers = send_all(&server, bodies.clone()).await;

    let mut by_event: BTreeMap<String, Vec<(StatusCode, EventId)>> = BTreeMap::new();
    for (body, (status, json)) in bodies.iter().zip(&answers) {
        let key = serde_json::from_str::<serde_json::Value>(body).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let id: EventId = json["id"].as_str().expect("an id").parse().unwrap();
        let expected = if *status == StatusCode::ACCEPTED {
            "queued"
        } else {
            "duplicate"
        };
        assert_eq!(json["status"], expected, "{json}");
        by_event.entry(key).or_default().push((*status, id));
    }
    assert_eq!(by_event.len(), 60);
    let mut new_ids = BTreeSet::new();
    for (key, answers) in &by_event {
        let accepted = answers
            .iter()
            .filter(|(s, _)| *s == StatusCode::ACCEPTED)
            .count();
        let duplicates = answers.iter().filter(|(s, _)| *s == StatusCode::OK).count();
        assert_eq!((accepted, duplicates), (1, 2), "{key}: {answers:?}");
        let ids: BTreeSet<EventId> = answers.iter().map(|(_, id)| *id).collect();
        assert_eq!(ids.len(), 1, "{key}: one id for every copy: {answers:?}");
        let id = *ids.first().unwrap();
        new_ids.insert(id);
        // The row under that id is this event's, with its exact bytes and one first transition.
        let e = server.event(id).await;
        assert_eq!(&e.idempotency_key, key);
        let body = &events.iter().find(|(k, _)| k == key).unwrap().1;
        assert_eq!(e.body_bytes, body.len());
        let received: Vec<_> = e.transitions.iter().filter(|t| t.from.is_none()).collect();
        assert_eq!(received.len(), 1, "{e:#?}");
        assert_eq!(received[0].to, EventStatus::Pending);
    }
    assert_eq!(new_ids.len(), 60);
    assert_eq!(server.total_events().await, 60);
    server.stop().await;
}

async fn a_batch_fails_whole_with_503_while_the_store_is_down(b: Backend) {
    let db = TestDb::new(b).await;
    let server = TestServer::start(&db, "", GROUPED).await;
    let bodies: Vec<String> = (0..20)
        .map(|_| stripe_event("charge.succeeded").1)
        .collect();
    let outage = db.take_down().await;
    for (status, json) in send_all(&server, bodies.clone()).await {
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{json}");
        assert_eq!(json["error"], "store_unavailable");
    }
    outage.end().await;
    // Nothing was stored: once the store is back, every event is new. The first attempts may
    // still meet connections the outage cut, so retry as a provider would.
    let mut pending = bodies;
    for _ in 0..50 {
        let answers = send_all(&server, pending.clone()).await;
        let mut again = Vec::new();
        for (body, (status, json)) in pending.into_iter().zip(answers) {
            match status {
                StatusCode::ACCEPTED => {}
                StatusCode::SERVICE_UNAVAILABLE => again.push(body),
                other => panic!("{other}: {json}"),
            }
        }
        pending = again;
        if pending.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(pending.is_empty(), "{} never accepted", pending.len());
    assert_eq!(server.total_events().await, 20);
    server.stop().await;
}

async fn one_refused_event_does_not_fail_its_batch(b: Backend) {
    let db = TestDb::new(b).await;
    let server = TestServer::start(&db, "", GROUPED).await;
    // A NUL character in the event id: PostgreSQL refuses it in a text column, SQLite keeps it.
    let bad = r#"{"id":"evt_nul_\u0000_x","type":"charge.succeeded"}"#.to_owned();
    let mut bodies: Vec<String> = (0..10)
        .map(|_| stripe_event("charge.succeeded").1)
        .collect();
    bodies.insert(5, bad);
    let answers = send_all(&server, bodies).await;
    // Since ids are checked at the door (printable ASCII), the NUL id is refused before it can
    // reach the database; the events batched around it are committed all the same.
    for (i, (status, json)) in answers.iter().enumerate() {
        match i {
            5 => {
                assert_eq!(*status, StatusCode::BAD_REQUEST, "{json}");
                assert_eq!(json["error"], "invalid_idempotency_key");
            }
            _ => assert_eq!(*status, StatusCode::ACCEPTED, "{i}: {json}"),
        }
    }
    let stored = match b {
        Backend::Postgres | Backend::Sqlite => 10,
    };
    assert_eq!(server.total_events().await, stored);
    server.stop().await;
}
