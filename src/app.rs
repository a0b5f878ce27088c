//! Wiring: builds the store, queue, workers and HTTP server from a [`Config`] and runs them
//! until shutdown. Used by `main` and by the integration tests, so both run the same code.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::actions::breaker::Destinations;
use crate::actions::{Actions, Router, SetupError};
use crate::config::{Config, redact_url};
use crate::http::{self, AppState};
use crate::queue::{Queue, StoreQueue};
use crate::store::{self, EventStore, StoreError};
use crate::worker::{Worker, WorkerSettings};

/// Which parts of hookd this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub api: bool,
    pub workers: bool,
}

impl Roles {
    pub const SERVE: Self = Self {
        api: true,
        workers: true,
    };
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the store at {url}: {source}")]
    Store { url: String, source: StoreError },
    #[error("cannot apply migrations: {0}")]
    Migrate(StoreError),
    #[error("cannot set up the actions: {0}")]
    Actions(#[from] SetupError),
    #[error("cannot listen on {addr}: {source} (set PORT or HOOKD_BIND)")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Open the store named by the config and bring its schema up to date.
pub async fn open_store(config: &Config) -> Result<Arc<dyn EventStore>, StartError> {
    let store = store::connect(
        &config.database_url,
        config.db_pool_size,
        config.store_timeout,
    )
    .await
    .map_err(|source| StartError::Store {
        url: redact_url(&config.database_url),
        source,
    })?;
    store.migrate().await.map_err(StartError::Migrate)?;
    Ok(store)
}

/// A started hookd: its address, and the handle to stop it.
pub struct Running {
    /// Where the HTTP server listens (None without the api role).
    pub addr: Option<SocketAddr>,
    pub store: Arc<dyn EventStore>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Ask every part to stop: the server stops accepting and finishes in-flight requests,
    /// workers finish in-flight steps and hand back their leases.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Wait until every part has stopped.
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Start the roles asked for. Returns once the server is listening.
pub async fn start(config: &Config, roles: Roles) -> Result<Running, StartError> {
    let store = open_store(config).await?;
    let queue: Arc<dyn Queue> = Arc::new(StoreQueue::new(store.clone()));
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let mut addr = None;

    // Breaker state lives with the workers of this process; an api-only process has none.
    let mut destinations = None;
    if roles.workers {
        let router = Router::new(
            &config.routes,
            config.smtp.as_ref().map(|s| s.destination()),
        );
        let dests = Arc::new(Destinations::new(
            config.breaker,
            config.destination_concurrency,
            router.provider_destinations(),
        ));
        destinations = Some(dests.clone());
        let worker = Arc::new(Worker::new(
            store.clone(),
            queue.clone(),
            router,
            Actions::new(config.forward_timeout, config.smtp.as_ref())?,
            dests,
            WorkerSettings {
                concurrency: config.workers,
                lease: config.lease,
                poll_interval: config.poll_interval,
                retry: config.retry,
                drain_timeout: config.shutdown_timeout,
            },
        ));
        tasks.push(tokio::spawn(worker.run(shutdown_rx.clone())));
    }

    if roles.api {
        let bind = SocketAddr::new(config.bind, config.port);
        let listener = TcpListener::bind(bind)
            .await
            .map_err(|source| StartError::Bind { addr: bind, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| StartError::Bind { addr: bind, source })?;
        addr = Some(local);
        let providers = config.providers();
        let names: Vec<&str> = providers.names().collect();
        tracing::info!(addr = %local, store = store.backend(), providers = ?names, "listening");
        let state = Arc::new(AppState {
            store: store.clone(),
            queue,
            providers,
            admin_token: config.admin_token.clone(),
            max_body_bytes: config.max_body_bytes,
            destinations,
        });
        let app = http::router(state);
        let mut rx = shutdown_rx.clone();
        let grace = config.shutdown_timeout;
        tasks.push(tokio::spawn(async move {
            let stop = async move {
                let _ = rx.wait_for(|stop| *stop).await;
            };
            let server = axum::serve(listener, app).with_graceful_shutdown(stop);
            let mut rx = shutdown_rx;
            // In-flight requests get the grace period; a client that holds its connection
            // longer is cut off.
            tokio::select! {
                r = server => if let Err(e) = r { tracing::error!(error = %e, "server error") },
                _ = async { let _ = rx.wait_for(|s| *s).await; tokio::time::sleep(grace).await } => {
                    tracing::warn!("shutdown grace period over; closing remaining connections");
                }
            }
        }));
    }

    Ok(Running {
        addr,
        store,
        shutdown,
        tasks,
    })
}
