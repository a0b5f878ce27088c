//! Settings of the event store: which database, its pool, how long a request waits for it, group
//! commit, and how long start-up waits for the database to come up. Owns their defaults and what
//! a database URL may be. It must never read the environment or a file: the configuration reader
//! fills [`StoreSettings`] and hands it over.

use std::time::Duration;

/// Where events are stored, and how.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// `postgres://...` or `sqlite://...`.
    pub database_url: String,
    pub pool_size: u32,
    /// How long a request waits for the store (pool acquire, SQLite lock) before answering 503.
    pub timeout: Duration,
    /// Group commit: how long a batch of inserts waits for more after its first one.
    pub batch_window: Duration,
    /// Group commit: most inserts per transaction (1 turns group commit off).
    pub batch_max: usize,
    /// How long start-up waits for the store to answer before giving up.
    pub wait: Duration,
    /// How long a byte-identical body of a scheme that signs only the body (GitHub, Shopify)
    /// counts as a replay of the first.
    pub replay_window: Duration,
    /// Whether `serve`, `api` and `worker` apply missing migrations at start (`hookd migrate`
    /// always does). Off, they wait for another process to apply them instead.
    pub auto_migrate: bool,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            database_url: "sqlite://data/hookd.db".into(),
            pool_size: 16,
            timeout: Duration::from_secs(5),
            batch_window: Duration::from_micros(200),
            batch_max: 256,
            wait: Duration::from_secs(60),
            replay_window: super::DEFAULT_REPLAY_WINDOW,
            auto_migrate: true,
        }
    }
}

impl StoreSettings {
    /// Longest group-commit window, in microseconds: a longer one is a slow store, not a batch.
    pub const MAX_BATCH_WINDOW_US: u64 = 1_000_000;
    /// Most inserts in one group-commit transaction.
    pub const MAX_BATCH: usize = 10_000;
    /// Longest replay window, in hours: a year.
    pub const MAX_REPLAY_WINDOW_HOURS: u64 = 24 * 365;

    /// Whether this process runs on embedded SQLite (one process, nothing to share).
    pub fn is_sqlite(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }
}

/// A URL one of the store's engines opens.
pub fn is_store_url(url: &str) -> bool {
    is_postgres_url(url) || url.starts_with("sqlite:")
}

/// A PostgreSQL URL.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// A URL without its password, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_password() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("sqlite://data/x.db"), "sqlite://data/x.db");
    }
}
