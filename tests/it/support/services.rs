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
