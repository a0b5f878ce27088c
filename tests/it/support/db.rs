//! A store of each test's own: a temporary SQLite file, or a new PostgreSQL database on the
//! shared server (dropped afterwards), so tests run in parallel without seeing each other's
//! events. Also the outages tests cause on purpose. Never shares a database between tests.

use sqlx::Connection;

use super::pg_admin_url;

/// The store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs one test body against SQLite and against PostgreSQL, as two separate tests
/// (`<name>::sqlite` and `<name>::postgres`).
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::support::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::support::Backend::Postgres).await
            }
        }
    )*};
}
pub(crate) use both_backends;

/// A store of its own for one test. PostgreSQL databases are dropped when it goes away.
pub struct TestDb {
    pub backend: Backend,
    /// Its `DATABASE_URL`.
    pub url: String,
    /// The test's own folder: the SQLite file, config files and process logs.
    pub dir: tempfile::TempDir,
    pg_name: Option<String>,
}

impl TestDb {
    /// A new, empty store on `backend`.
    pub async fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        match backend {
            Backend::Sqlite => Self {
                backend,
                url: format!("sqlite://{}", dir.path().join("hookd.db").display()),
                dir,
                pg_name: None,
            },
            Backend::Postgres => {
                let admin = pg_admin_url();
                let name = format!("hookd_test_{}", uuid::Uuid::new_v4().simple());
                let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
                    panic!(
                        "PostgreSQL is required for the integration tests and is not reachable at \
                         {admin} ({e}). Start it (scripts/test.sh does) or set HOOKD_TEST_PG_URL."
                    )
                });
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
                Self {
                    backend,
                    url: format!("{base}/{name}"),
                    dir,
                    pg_name: Some(name),
                }
            }
        }
    }

    /// A PostgreSQL database that something else owns (a private server): not dropped here.
    pub fn at(url: String) -> Self {
        Self {
            backend: Backend::Postgres,
            url,
            dir: tempfile::tempdir().expect("temp dir"),
            pg_name: None,
        }
    }

    /// Make the store refuse service (PostgreSQL: no new connections and existing ones cut;
    /// SQLite: another connection holds the write lock). Returns a guard that restores it.
    pub async fn take_down(&self) -> Outage {
        match &self.pg_name {
            Some(name) => {
                let mut conn = sqlx::PgConnection::connect(&pg_admin_url()).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "ALTER DATABASE {name} ALLOW_CONNECTIONS false"
                )))
                .execute(&mut conn)
                .await
                .unwrap();
                sqlx::query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
                )
                .bind(name)
                .execute(&mut conn)
                .await
                .unwrap();
                Outage::Postgres { name: name.clone() }
            }
            None => {
                let mut conn = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                sqlx::query("BEGIN EXCLUSIVE")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                Outage::Sqlite(conn)
            }
        }
    }
}

/// A store made to refuse service by [`TestDb::take_down`]; [`Outage::end`] restores it.
pub enum Outage {
    Postgres { name: String },
    Sqlite(sqlx::SqliteConnection),
}

impl Outage {
    /// End the outage: the store serves again.
    pub async fn end(self) {
        match self {
            Self::Postgres { name } => {
                let mut conn = sqlx::PgConnection::connect(&pg_admin_url()).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "ALTER DATABASE {name} ALLOW_CONNECTIONS true"
                )))
                .execute(&mut conn)
                .await
                .unwrap();
            }
            Self::Sqlite(mut conn) => {
                sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        // Drop runs outside async context: do the clean-up on a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&pg_admin_url()).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}
