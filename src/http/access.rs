//! Who may reach the operator surfaces (`/admin` and `/ui`): an optional allow-list of client
//! addresses (`HOOKD_ADMIN_ALLOW`, 403 for anyone else), and a limit on failed logins per client
//! address (`HOOKD_ADMIN_MAX_FAILURES` a minute; after that every attempt from that address gets
//! 429 with `Retry-After` until the minute is over, even with the right token).
//!
//! Failures are counted per IPv4 address and per IPv6 /64 (one client usually holds a whole /64
//! and could otherwise rotate through it). At most `MAX_TRACKED` are remembered; when the table
//! is full the oldest entry that is not locked out is forgotten, so filling the table can neither
//! stop new addresses being counted nor free a locked-out one early.
//!
//! Works on any answer of the surfaces behind it: a 401 is a failed login, whatever the
//! authentication scheme. It must never read, log or compare a token itself; the client address
//! is the TCP peer (a proxy in front should enforce its own list).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AdminAccess;
use super::{ApiError, AppState};

const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most; see the module doc for what is dropped when full.
const MAX_TRACKED: usize = 10_000;

/// The allow-list and the failed-login counts of one process.
pub struct AccessGuard {
    config: AdminAccess,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl AccessGuard {
    pub fn new(config: AdminAccess) -> Self {
        Self {
            config,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn allowed(&self, ip: Option<IpAddr>) -> bool {
        match (&self.config.allow, ip) {
            (None, _) => true,
            (Some(list), Some(ip)) => list.iter().any(|net| net.contains(&canonical(ip))),
            (Some(_), None) => false,
        }
    }

    /// Seconds until `ip` may try again, if it has used up its failures.
    fn blocked(&self, ip: IpAddr, now: Instant) -> Option<u64> {
        let failures = self.failures.lock().expect("not poisoned");
        let (since, count) = failures.get(&client_key(ip))?;
        let ends = *since + WINDOW;
        (*count >= self.config.max_failures && ends > now)
            .then(|| (ends - now).as_secs_f64().ceil().max(1.0) as u64)
    }

    fn record_failure(&self, ip: IpAddr, now: Instant) {
        let key = client_key(ip);
        let mut failures = self.failures.lock().expect("not poisoned");
        if failures.len() >= MAX_TRACKED && !failures.contains_key(&key) {
            failures.retain(|_, (since, _)| now.duration_since(*since) < WINDOW);
            if failures.len() >= MAX_TRACKED {
                self.evict_one(&mut failures);
            }
        }
        let entry = failures.entry(key).or_insert((now, 0));
        if now.duration_since(entry.0) >= WINDOW {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }
}

impl AccessGuard {
    /// Forget the entry whose window started first among those not locked out (or, when every
    /// one is locked out, the oldest of all).
    fn evict_one(&self, failures: &mut HashMap<IpAddr, (Instant, u32)>) {
        let max = self.config.max_failures;
        let oldest = |locked: bool| {
            failures
                .iter()
                .filter(|(_, (_, n))| (*n >= max) == locked)
                .min_by_key(|(_, (since, _))| *since)
                .map(|(k, _)| *k)
        };
        if let Some(k) = oldest(false).or_else(|| oldest(true)) {
            failures.remove(&k);
        }
    }
}

/// The failure counter's key: the IPv4 address, or the /64 of an IPv6 address.
fn client_key(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !u128::from(u64::MAX);
            IpAddr::V6(std::net::Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

/// `::ffff:10.0.0.1` is `10.0.0.1` for the allow-list.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn guarded(path: &str) -> bool {
    ["/admin", "/ui"]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")))
}

/// Middleware on the whole router; only `/admin` and `/ui` are looked at.
pub async fn guard(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if !guarded(request.uri().path()) {
        return next.run(request).await;
    }
    let guard = &state.access;
    let ip = request
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| canonical(c.0.ip()));
    if !guard.allowed(ip) {
        tracing::warn!(client = ?ip, path = request.uri().path(), "admin access from an address not on HOOKD_ADMIN_ALLOW");
        return ApiError::AddressForbidden.into_response();
    }
    let Some(ip) = ip else {
        return next.run(request).await;
    };
    if let Some(retry_after_secs) = guard.blocked(ip, Instant::now()) {
        return ApiError::TooManyFailures { retry_after_secs }.into_response();
    }
    let response = next.run(request).await;
    if response.status() == StatusCode::UNAUTHORIZED {
        guard.record_failure(ip, Instant::now());
        tracing::warn!(client = %ip, "failed admin login");
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(allow: Option<&str>, max_failures: u32) -> AccessGuard {
        AccessGuard::new(AdminAccess {
            allow: allow.map(|a| {
                a.split(',')
                    .map(|s| crate::net::parse_net(s).unwrap())
                    .collect()
            }),
            max_failures,
        })
    }

    #[test]
    fn allow_list_matches_addresses_and_ranges() {
        let g = guard(Some("127.0.0.1,10.0.0.0/8,::1"), 5);
        for ok in ["127.0.0.1", "10.1.2.3", "::1", "::ffff:10.9.9.9"] {
            assert!(g.allowed(Some(ok.parse().unwrap())), "{ok}");
        }
        for no in ["127.0.0.2", "11.0.0.1", "::2"] {
            assert!(!g.allowed(Some(no.parse().unwrap())), "{no}");
        }
        assert!(!g.allowed(None));
        assert!(guard(None, 5).allowed(None));
    }

    #[test]
    fn failures_block_for_the_rest_of_the_window() {
        let g = guard(None, 3);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..2 {
            g.record_failure(ip, t0);
        }
        assert_eq!(g.blocked(ip, t0), None);
        g.record_failure(ip, t0);
        let wait = g.blocked(ip, t0 + Duration::from_secs(10)).unwrap();
        assert!((49..=50).contains(&wait), "{wait}");
        // Another address is not affected; the window ends.
        assert_eq!(g.blocked("192.0.2.2".parse().unwrap(), t0), None);
        assert_eq!(g.blocked(ip, t0 + WINDOW), None);
        g.record_failure(ip, t0 + WINDOW);
        assert_eq!(g.blocked(ip, t0 + WINDOW), None);
    }

    #[test]
    fn ipv6_clients_are_counted_per_64() {
        let g = guard(None, 2);
        let t0 = Instant::now();
        g.record_failure("2001:db8:1:2::1".parse().unwrap(), t0);
        g.record_failure("2001:db8:1:2:ffff::9".parse().unwrap(), t0);
        assert!(g.blocked("2001:db8:1:2::77".parse().unwrap(), t0).is_some());
        assert_eq!(g.blocked("2001:db8:1:3::1".parse().unwrap(), t0), None);
    }

    #[test]
    fn a_full_table_evicts_instead_of_ignoring_and_keeps_lockouts() {
        let g = guard(None, 2);
        let t0 = Instant::now();
        let locked: IpAddr = "198.51.100.1".parse().unwrap();
        g.record_failure(locked, t0);
        g.record_failure(locked, t0);
        // Fill the table with addresses that each failed once, later in the window.
        for i in 0..MAX_TRACKED as u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            g.record_failure(ip, t0 + Duration::from_secs(1));
        }
        assert!(g.failures.lock().unwrap().len() <= MAX_TRACKED);
        // A new address is still counted, and the locked-out one stays locked out.
        let fresh: IpAddr = "203.0.113.9".parse().unwrap();
        let t1 = t0 + Duration::from_secs(2);
        g.record_failure(fresh, t1);
        g.record_failure(fresh, t1);
        assert!(g.blocked(fresh, t1).is_some(), "new addresses are recorded");
        assert!(
            g.blocked(locked, t1).is_some(),
            "the lockout survived the flood"
        );
    }

    #[test]
    fn only_the_operator_surfaces_are_guarded() {
        assert!(guarded("/admin") && guarded("/admin/events/x") && guarded("/ui/"));
        assert!(!guarded("/webhooks/stripe") && !guarded("/administrator") && !guarded("/health"));
    }
}
