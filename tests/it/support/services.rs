//! Where the shared services are (PostgreSQL and Redis, from `HOOKD_TEST_*` or their local
//! defaults) and free ports for servers the tests start. A service that does not answer fails
//! the test with what to do about it; nothing here ever skips a test.

/// The server PostgreSQL tests create their databases on.
pub fn pg_admin_url() -> String {
    std::env::var("HOOKD_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The shared Redis the tests use (each test under its own key prefix).
pub fn redis_url() -> String {
    std::env::var("HOOKD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A key prefix no other test uses.
pub fn unique_prefix() -> String {
    format!("t{}", uuid::Uuid::new_v4().simple())
}

/// A connection to the Redis at `url`.
pub async fn redis_conn(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).unwrap();
    client
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "Redis is required for these tests and is not reachable at {url} ({e}). \
             Start it (scripts/test.sh does) or set HOOKD_TEST_REDIS_URL."
            )
        })
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A free TCP port on loopback below the kernel's ephemeral range, for a server that is stopped
/// and started again on the same port (behind a load balancer that knows it by its port).
/// [`free_port`] hands out ephemeral ports, which the kernel may give to another test's server
/// or outgoing connection while the first is down; the kernel never picks one of these itself.
pub fn stable_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let low: u32 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    // Somewhere in the 10,000 ports below the range, different for each test process.
    let base = low.saturating_sub(10_000).max(1024);
    let start = std::process::id() % 5000 * 2;
    loop {
        let next = u32::from(NEXT.fetch_add(1, Ordering::Relaxed));
        let port = (base + (start + next) % (low - base)) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
