//! The retry window (`HOOKD_RETRY_WINDOW`): an event that cannot finish within it is
//! dead-lettered with `retry_window_expired` and its compensations run, even while its
//! destination's breaker stays open or its next retry is due later; an event that finishes in
//! time is untouched, and a replay starts a window of its own. Real HTTP targets, both stores.

use std::time::Duration;

use crate::support::*;
use hookd::event::EventStatus;
use reqwest::StatusCode;

both_backends!(
    an_event_parked_behind_an_open_breaker_expires_and_compensates,
    a_retry_due_after_the_window_is_cut_to_it_and_a_replay_gets_a_new_window,
    an_event_that_finishes_in_time_is_untouched,
);

/// Long enough for an event to expire and be dead-lettered on a loaded machine.
const WAIT: Duration = Duration::from_secs(30);

async fn an_event_parked_behind_an_open_breaker_expires_and_compensates(b: Backend) {
    let db = TestDb::new(b).await;
    let done = Target::start(Behaviour::default()).await;
    let undo = Target::start(Behaviour::default()).await;
    let down = Target::start(Behaviour {
        always_fail: true,
        ..Default::default()
    })
    .await;
    let routes = format!(
        "[[routes]]\nname = \"saga\"\nprovider = \"stripe\"\nsteps = [\
         {{ action = \"forward\", url = \"{}\", compensate = {{ action = \"forward\", url = \"{}\" }} }}, \
         {{ action = \"forward\", url = \"{}\" }}]\n",
        done.url, undo.url, down.url
    );
    // The first failure opens the breaker for a minute, far beyond the 3 s window, and attempts
    // would last long: only the window can end this event in time.
    let server = TestServer::start(
        &db,
        &routes,
        &[
            ("HOOKD_BREAKER_FAILURES", "1"),
            ("HOOKD_BREAKER_COOLDOWN_MS", "60000"),
            ("HOOKD_MAX_ATTEMPTS", "50"),
            ("HOOKD_RETRY_WINDOW", "3s"),
        ],
    )
    .await;
    let (_, body) = stripe_event("payment_intent.succeeded");
    let id = id_of(server.post_stripe(&body).await).await;
    let e = server.wait_status(id, EventStatus::DeadLetter, WAIT).await;

    let error = e.last_error.as_deref().unwrap_or_default();
    assert!(error.starts_with("retry_window_expired"), "{error}");
    assert!(
        error.contains("compensations: saga/0:compensate:forward succeeded"),
        "{error}"
    );
    let dead_at = e.transitions.last().map(|t| t.at).unwrap();
    let lived = (dead_at - e.received_at).to_std().unwrap();
    assert!(
        lived >= Duration::from_secs(3),
        "dead-lettered after {lived:?}: before its window ended"
    );
    // The breaker opened at the first failure and stayed open: the destination saw one request,
    // and the failure was the outage's, not an attempt's.
    assert_eq!(down.hits(), 1);
    assert_eq!(
        (done.hits(), undo.hits()),
        (1, 1),
        "the step once, its compensation once"
    );
    let steps: Vec<(&str, &str)> = e
        .steps
        .iter()
        .map(|s| (s.step.as_str(), s.outcome.as_str()))
        .collect();
    assert_eq!(
        steps,
        [
            ("saga/0:forward", "succeeded"),
            ("saga/0:compensate:forward", "succeeded")
        ]
    );
    let to: Vec<EventStatus> = e.transitions.iter().map(|t| t.to).collect();
    assert!(to.contains(&EventStatus::Compensating), "{to:?}");
    let parked = e
        .transitions
        .iter()
        .filter_map(|t| t.detail.as_deref())
        .any(|d| d.contains("circuit breaker open") && d.contains("attempt not counted"));
    assert!(parked, "{:#?}", e.transitions);
    let compensating = e
        .transitions
        .iter()
        .find(|t| t.to == EventStatus::Compensating)
        .and_then(|t| t.detail.as_deref())
        .unwrap_or_default();
    assert!(
        compensating.contains("retry_window_expired"),
        "{compensating}"
    );
    // The admin API shows the reason too.
    let v = server.admin_get(&format!("/events/{id}")).await;
    assert!(
        v["last_error"]
            .as_str()
            .unwrap()
            .starts_with("retry_window_expired"),
        "{v:#}"
    );
    server.stop().await;
}

async fn a_retry_due_after_the_window_is_cut_to_it_and_a_replay_gets_a_new_window(b: Backend) {
    let db = TestDb::new(b).await;
    let target = Target::start(Behaviour::default()).await;
    target.set_down(true);
    let routes = format!(
        "[[routes]]\nname = \"r\"\nprovider = \"stripe\"\nsteps = [{{ action = \"forward\", url = \"{}\" }}]\n",
        target.url
    );
    // The first retry would be due 20 s after the failure; the window ends 3 s after arrival.
    let server = TestServer::start(
        &db,
        &routes,
        &[
            ("HOOKD_RETRY_BASE_MS", "10000"),
            ("HOOKD_MAX_ATTEMPTS", "5"),
            ("HOOKD_RETRY_WINDOW", "3s"),
        ],
    )
    .await;
    let (_, body) = stripe_event("charge.succeeded");
    let id = id_of(server.post_stripe(&body).await).await;
    let e = server
        .wait_status(id, EventStatus::DeadLetter, Duration::from_secs(15))
        .await;
    let error = e.last_error.as_deref().unwrap_or_default();
    assert!(error.starts_with("retry_window_expired"), "{error}");
    assert_eq!(target.hits(), 1, "no attempt after the window");
    let retry = e
        .transitions
        .iter()
        .find(|t| t.to == EventStatus::RetryScheduled)
        .and_then(|t| t.detail.clone())
        .unwrap_or_default();
    assert!(retry.contains("HTTP 503"), "{retry}");

    // Replayed after its window, it is delivered: a replay's window starts at the replay.
    target.set_down(false);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let replay = server
        .admin_post(&format!("/events/{id}/replay"), None)
        .await;
    assert_eq!(replay.status(), StatusCode::OK, "{:?}", replay.text().await);
    let e = server.wait_status(id, EventStatus::Completed, WAIT).await;
    assert_eq!(e.replays, 1);
    assert_eq!(target.succeeded().len(), 1);
    server.stop().await;
}

async fn an_event_that_finishes_in_time_is_untouched(b: Backend) {
    let db = TestDb::new(b).await;
    let target = Target::start(Behaviour {
        fail_first: 2,
        ..Default::default()
    })
    .await;
    let routes = format!(
        "[[routes]]\nname = \"r\"\nprovider = \"stripe\"\nsteps = [{{ action = \"forward\", url = \"{}\" }}]\n",
        target.url
    );
    let server = TestServer::start(
        &db,
        &routes,
        &[("HOOKD_MAX_ATTEMPTS", "5"), ("HOOKD_RETRY_WINDOW", "3s")],
    )
    .await;
    let (_, body) = stripe_event("charge.succeeded");
    let id = id_of(server.post_stripe(&body).await).await;
    let e = server.wait_status(id, EventStatus::Completed, WAIT).await;
    assert_eq!(
        (e.attempts, target.hits()),
        (3, 3),
        "two retries, then delivered"
    );
    // Once its window is over, nothing happens to a finished event.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let later = server.wait_status(id, EventStatus::Completed, WAIT).await;
    assert_eq!(later.transitions.len(), e.transitions.len());
    assert_eq!(target.hits(), 3);
    server.stop().await;
}
