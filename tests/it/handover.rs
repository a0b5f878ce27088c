//! Claim in the commit: a process that accepts webhooks and runs workers (`serve`) claims new
//! events in the insert that stores them and hands them to its workers in memory. Their
//! history shows it (the attempt's transition is written by the same commit as `received`),
//! and a `kill -9` right after accepting loses nothing: the lease expires and another process
//! takes the events over. Both stores.

use std::time::Duration;

use crate::support::*;
use hookd::event::{EventId, EventStatus};
use reqwest::StatusCode;

const WAIT: Duration = Duration::from_secs(20);

both_backends!(
    accepted_events_are_claimed_in_their_commit,
    kill_9_right_after_accepting_loses_nothing
);

async fn accepted_events_are_claimed_in_their_commit(b: Backend) {
    let db = TestDb::new(b).await;
    let target = Target::start(Behaviour::default()).await;
    let server = TestServer::start(&db, &forward_route(&target.url), &[]).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (_, body) = stripe_event("payment_intent.succeeded");
        let r = server.post_stripe(&body).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        ids.push(id_of(r).await);
    }
    for id in ids {
        let e = server.wait_status(id, EventStatus::Completed, WAIT).await;
        assert_eq!(e.attempts, 1);
        let steps: Vec<(Option<EventStatus>, EventStatus)> =
            e.transitions.iter().map(|t| (t.from, t.to)).collect();
        assert_eq!(
            steps,
            [
                (None, EventStatus::Pending),
                (Some(EventStatus::Pending), EventStatus::Processing),
                (Some(EventStatus::Processing), EventStatus::Completed),
            ],
            "{:?}",
            e.transitions
        );
        let attempt = e.transitions[1].detail.as_deref().unwrap_or_default();
        assert!(attempt.starts_with("attempt 1 by "), "{attempt}");
        // Written by the insert's own transaction: the same time as `received`.
        assert_eq!(
            e.transitions[0].at, e.transitions[1].at,
            "claimed in the commit: {:?}",
            e.transitions
        );
    }
    assert_eq!(target.received().len(), 3);
    server.stop().await;
}

async fn kill_9_right_after_accepting_loses_nothing(b: Backend) {
    let db = TestDb::new(b).await;
    // Slow enough that the first process is still working when it is killed.
    let target = Target::start(Behaviour {
        delay: Duration::from_millis(500),
        ..Default::default()
    })
    .await;
    let routes = forward_route(&target.url);
    let mut first = Hookd::spawn(&db, &routes, "first.log").await;
    let http = reqwest::Client::new();
    let mut ids: Vec<EventId> = Vec::new();
    for _ in 0..5 {
        let (_, body) = stripe_event("payment_intent.succeeded");
        let r = stripe_request(&http, &first.url, &body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        ids.push(id_of(r).await);
    }
    first.child.kill().unwrap();
    first.child.wait().unwrap();

    // Lease is 2 s in tests: another process takes every event over once it expires.
    let second = Hookd::spawn(&db, &routes, "second.log").await;
    for id in ids {
        let e = second.wait_status(id, EventStatus::Completed, WAIT).await;
        assert!(e["attempts"].as_u64().unwrap() >= 1, "{e:#}");
    }
    let forwarded: std::collections::HashSet<String> = target
        .succeeded()
        .iter()
        .map(|r| r.headers["x-hookd-event-id"].to_str().unwrap().to_owned())
        .collect();
    assert_eq!(forwarded.len(), 5, "every event reached the target");
}
