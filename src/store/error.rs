//! Store failures: what the caller should do about them ([`StoreError`]), and why they happened
//! ([`Cause`], which keeps the driver's own error).
//!
//! Owns the one place that decides which database errors mean "unavailable, retry later". It
//! must never turn an error into a string where the error itself can be kept, and never map
//! anything to HTTP: that is done once, in `http/`.

use std::sync::Arc;

/// Store failures, split by what the caller should do about them.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or is busy: retry later (HTTP 503).
    #[error("store unavailable: {0}")]
    Unavailable(#[source] Cause),
    /// Anything else: a bug or a schema problem (HTTP 500).
    #[error("store error: {0}")]
    Other(#[source] Cause),
}

/// Why a store call failed. Shared (`Arc`) so one failed batch can answer every caller in it
/// with the same error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Cause {
    /// The database driver's error.
    #[error(transparent)]
    Database(Arc<sqlx::Error>),
    /// Applying the embedded migrations failed.
    #[error(transparent)]
    Migration(Arc<sqlx::migrate::MigrateError>),
    /// A file system error (creating the SQLite database's directory).
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: Arc<std::io::Error>,
    },
    /// A JSON column that does not decode, or a value that does not encode.
    #[error(transparent)]
    Json(Arc<serde_json::Error>),
    /// A failure with no underlying error: a broken invariant, or a component that stopped.
    #[error("{0}")]
    Message(String),
}

impl From<&str> for Cause {
    fn from(message: &str) -> Self {
        Self::Message(message.to_owned())
    }
}

impl From<String> for Cause {
    fn from(message: String) -> Self {
        Self::Message(message)
    }
}

impl StoreError {
    /// An "unavailable" error with no underlying error.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable(Cause::Message(message.into()))
    }

    /// An "other" error with no underlying error.
    pub fn other(message: impl Into<String>) -> Self {
        Self::Other(Cause::Message(message.into()))
    }

    /// True for [`StoreError::Unavailable`].
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// Why it failed.
    pub fn cause(&self) -> &Cause {
        match self {
            Self::Unavailable(c) | Self::Other(c) => c,
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        Self::Other(Cause::Json(Arc::new(e)))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        if unavailable(&e) {
            Self::Unavailable(Cause::Database(Arc::new(e)))
        } else {
            Self::Other(Cause::Database(Arc::new(e)))
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        match e {
            sqlx::migrate::MigrateError::Execute(inner) => inner.into(),
            other => Self::Other(Cause::Migration(Arc::new(other))),
        }
    }
}

/// Whether a driver error means the database cannot be reached or is busy for now.
fn unavailable(e: &sqlx::Error) -> bool {
    use sqlx::Error as E;
    match e {
        E::Io(_) | E::PoolTimedOut | E::PoolClosed | E::Tls(_) | E::WorkerCrashed => true,
        E::Database(db) => {
            let code = db.code().unwrap_or_default();
            // SQLite: 5 BUSY, 6 LOCKED, 10 IOERR, 13 FULL, 14 CANTOPEN (and extended codes).
            // PostgreSQL: 08 connection, 28 authorization, 3D no such database, 40 transaction
            // rollback (deadlock, serialization), 53 resources, 55 not accepting connections,
            // 57 operator intervention (shutdown, terminated), 58 system (I/O).
            // Which engine matters: many SQLSTATEs are numeric too (22021 & 0xff is 5).
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                code.parse::<i32>()
                    .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 10 | 13 | 14))
            } else {
                ["08", "28", "3D", "40", "53", "55", "57", "58"]
                    .iter()
                    .any(|class| code.starts_with(class))
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error;

    use super::*;

    #[test]
    fn the_driver_error_is_kept_as_the_source() {
        let e = StoreError::from(sqlx::Error::PoolTimedOut);
        assert!(e.is_unavailable());
        let source = e.source().expect("a source");
        assert!(matches!(
            source.downcast_ref::<Cause>(),
            Some(Cause::Database(db)) if matches!(**db, sqlx::Error::PoolTimedOut)
        ));
        assert!(e.to_string().starts_with("store unavailable: "), "{e}");
    }

    #[test]
    fn a_driver_error_that_is_not_an_outage_is_other() {
        let e = StoreError::from(sqlx::Error::RowNotFound);
        assert!(matches!(e, StoreError::Other(Cause::Database(_))));
    }
}
