//! Admission control for `POST /webhooks/{provider}`, before anything is read or verified:
//! a bound on requests in flight (beyond it 503 at once, so latency cannot collapse), a token
//! bucket per provider (429 with `Retry-After`), and a deadline for the body (a client that
//! trickles its body is cut off with 408).
//!
//! Owns the limiters and the body deadline. It must never look at a body or a signature, and
//! never make a request wait for a token: an answer that says "later" is always immediate.

use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};
use http_body::{Frame, SizeHint};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};

use super::{ApiError, AppState};
use super::{Limits, RateQuota};
use crate::telemetry::metrics;
use crate::verify::Lookup;

/// The limiters of one process.
pub struct Admission {
    in_flight: Arc<Semaphore>,
    /// One bucket per provider that has a rate; a provider created through the admin API gets
    /// its bucket on its first request.
    buckets: RwLock<HashMap<String, Arc<DefaultDirectRateLimiter>>>,
    /// Each provider's rate.
    rates: Limits,
    /// Shared by every unknown provider name (when there is a default rate), so made-up names
    /// cannot each get a fresh bucket.
    unknown: Option<DefaultDirectRateLimiter>,
    clock: DefaultClock,
    body_timeout: Duration,
    /// Largest webhook body, refused on its `Content-Length` before anything is read.
    max_body_bytes: usize,
    /// Connections that may be reading a body that is not a webhook's at once: the connections
    /// beyond it are kept for webhooks (`HOOKD_WEBHOOK_RESERVED_CONNECTIONS`, see `bodies`).
    pub(super) other_bodies: Arc<Semaphore>,
}

fn limiter(q: RateQuota) -> DefaultDirectRateLimiter {
    let nz = |n: u32| NonZeroU32::new(n.max(1)).expect("at least one");
    DefaultDirectRateLimiter::direct(Quota::per_second(nz(q.per_sec)).allow_burst(nz(q.burst)))
}

impl Admission {
    pub fn new<'a>(
        limits: &Limits,
        max_body_bytes: usize,
        providers: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let buckets = providers
            .into_iter()
            .filter_map(|p| {
                limits
                    .rate_for(p)
                    .map(|q| (p.to_owned(), Arc::new(limiter(q))))
            })
            .collect();
        Self {
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
            buckets: RwLock::new(buckets),
            rates: limits.clone(),
            unknown: limits.rate.map(limiter),
            clock: DefaultClock::default(),
            body_timeout: limits.body_timeout,
            max_body_bytes,
            other_bodies: Arc::new(Semaphore::new(
                limits
                    .max_connections
                    .saturating_sub(limits.webhook_reserved_connections),
            )),
        }
    }

    /// Time a client has to send a whole body after its headers.
    pub fn body_timeout(&self) -> Duration {
        self.body_timeout
    }

    /// Take a token for `provider`; the wait until the next one if there is none.
    fn take(&self, provider: &str, known: bool) -> Result<(), Duration> {
        let check = |b: &DefaultDirectRateLimiter| {
            b.check()
                .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
        };
        if !known {
            return self.unknown.as_ref().map_or(Ok(()), check);
        }
        self.bucket(provider).map_or(Ok(()), |b| check(&b))
    }

    /// The bucket of a known provider that has a rate, made on its first request when the
    /// provider was created after start (the live configuration).
    fn bucket(&self, provider: &str) -> Option<Arc<DefaultDirectRateLimiter>> {
        let read = self.buckets.read().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = read.get(provider) {
            return Some(b.clone());
        }
        drop(read);
        let quota = self.rates.rate_for(provider)?;
        let mut write = self.buckets.write().unwrap_or_else(|p| p.into_inner());
        Some(
            write
                .entry(provider.to_owned())
                .or_insert_with(|| Arc::new(limiter(quota)))
                .clone(),
        )
    }
}

/// Middleware on the webhook route.
pub async fn admit(
    State(state): State<Arc<AppState>>,
    Path(provider): Path<String>,
    request: Request,
    next: Next,
) -> Response {
    let admission = &state.admission;
    let known = !matches!(state.providers.load().lookup(&provider), Lookup::Unknown);
    let label = if known { provider.as_str() } else { "unknown" };
    let reject = |e: ApiError| {
        metrics::webhook_received(label, e.status_and_code().1);
        e.into_response()
    };
    // Overload first: it costs nothing and protects everything behind it.
    // A body declared too large is refused before it is polled, so a client that sent
    // `Expect: 100-continue` is not told to go ahead first.
    if super::bodies::declared_length(&request).is_some_and(|n| n > admission.max_body_bytes) {
        return reject(ApiError::BodyTooLarge {
            limit: admission.max_body_bytes,
        });
    }
    let Ok(permit) = admission.in_flight.clone().try_acquire_owned() else {
        tracing::warn!(
            provider = label,
            "overloaded: too many webhook requests in flight"
        );
        return reject(ApiError::Overloaded);
    };
    if let Err(wait) = admission.take(&provider, known) {
        tracing::debug!(provider = label, "rate limited");
        return reject(ApiError::RateLimited {
            retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
        });
    }
    let deadline = Instant::now() + admission.body_timeout;
    let request = request.map(|body| Body::new(DeadlineBody::new(body, deadline)));
    let response = next.run(request).await;
    drop(permit);
    response
}

/// The body did not arrive before its deadline.
#[derive(Debug, thiserror::Error)]
#[error("the request body was not received in time")]
pub struct BodyTimedOut;

/// Whether `error` (a body extraction failure) or anything behind it is [`BodyTimedOut`].
pub fn is_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut e = Some(error);
    while let Some(err) = e {
        if err.is::<BodyTimedOut>() {
            return true;
        }
        e = err.source();
    }
    false
}

/// A request body that fails with [`BodyTimedOut`] once `deadline` has passed.
pub struct DeadlineBody {
    inner: Body,
    sleep: Pin<Box<Sleep>>,
}

impl DeadlineBody {
    pub fn new(inner: Body, deadline: Instant) -> Self {
        Self {
            inner,
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
        }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimedOut)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rate: Option<RateQuota>) -> Limits {
        Limits {
            rate,
            ..Limits::default()
        }
    }

    #[test]
    fn bucket_allows_the_burst_then_says_when() {
        let a = Admission::new(
            &limits(Some(RateQuota {
                per_sec: 2,
                burst: 3,
            })),
            1024,
            ["stripe"],
        );
        for _ in 0..3 {
            assert!(a.take("stripe", true).is_ok());
        }
        let wait = a.take("stripe", true).unwrap_err();
        assert!(wait <= Duration::from_millis(500), "{wait:?}");
        // Unknown names share one bucket of their own.
        assert!(a.take("nosuch", false).is_ok());
    }

    #[test]
    fn no_rate_means_no_limit() {
        let a = Admission::new(&limits(None), 1024, ["stripe"]);
        for _ in 0..10_000 {
            assert!(a.take("stripe", true).is_ok());
            assert!(a.take("x", false).is_ok());
        }
    }

    #[test]
    fn provider_rate_overrides_the_default() {
        let mut l = limits(None);
        l.provider_rates.insert(
            "github".into(),
            Some(RateQuota {
                per_sec: 1,
                burst: 1,
            }),
        );
        let a = Admission::new(&l, 1024, ["stripe", "github"]);
        assert!(a.take("github", true).is_ok());
        assert!(a.take("github", true).is_err());
        assert!(a.take("stripe", true).is_ok());
    }

    #[tokio::test]
    async fn a_trickling_body_times_out() {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
        let stream = http_body_stream(rx);
        let body = DeadlineBody::new(
            Body::new(stream),
            Instant::now() + Duration::from_millis(50),
        );
        tx.send(Ok(Frame::data(Bytes::from_static(b"{"))))
            .await
            .unwrap();
        let err = axum::body::to_bytes(Body::new(body), 1024)
            .await
            .unwrap_err();
        assert!(is_body_timeout(&err), "{err}");
        drop(tx);
    }

    /// A body fed by a channel (a client that sends when it likes).
    fn http_body_stream(
        rx: tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, std::io::Error>>,
    ) -> impl http_body::Body<Data = Bytes, Error = std::io::Error> + Send + 'static {
        struct Chan(tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, std::io::Error>>);
        impl http_body::Body for Chan {
            type Data = Bytes;
            type Error = std::io::Error;
            fn poll_frame(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
                self.0.poll_recv(cx)
            }
        }
        Chan(rx)
    }
}
