//! Wiring: builds the store, queue, workers and HTTP server from a [`Config`] and runs them
//! until shutdown. Used by `main` and by the integration tests, so both run the same code.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::actions::breaker::Destinations;
use crate::actions::{Actions, Router, SetupError};
use crate::config::Config;
use crate::http::group_commit::{GroupCommit, GroupCommitSettings};
use crate::http::server::{self, ServerSettings};
use crate::http::tls::{TlsError, TlsListener};
use crate::http::{self, AppState, HealthState};
use crate::ops::{Ops, OpsParts};
use crate::queue::{Queue, RedisQueue, StoreQueue};
use crate::store::{self, EventStore, StoreError, redact_url};
use crate::telemetry::liveness::Heartbeat;
use crate::verify::{ProviderError, Providers};
use crate::worker::Worker;

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
    #[error(
        "cannot open the store at {url}: gave up after {waited_secs} s \
         (HOOKD_STORE_WAIT_SECS): {source}"
    )]
    StoreWait {
        url: String,
        waited_secs: u64,
        source: StoreError,
    },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot apply migrations: {0}")]
    Migrate(#[source] StoreError),
    #[error(transparent)]
    Providers(#[from] ProviderError),
    #[error("cannot set up the actions: {0}")]
    Actions(#[from] SetupError),
    #[error("cannot listen on {addr}: {source} (set PORT or HOOKD_BIND)")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "cannot listen on {addr} for /health and /metrics: {source} (set HOOKD_INTERNAL_ADDR; \
         `hookd worker` listens on 0.0.0.0:9090 unless it is set)"
    )]
    InternalBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Open the store named by the config and bring its schema up to date. While the store cannot
/// be reached (it is starting, restarting, or the network is not up yet) this retries with
/// backoff for up to `HOOKD_STORE_WAIT_SECS`, saying so in the log, rather than exit at once.
pub async fn open_store(config: &Config) -> Result<Arc<dyn EventStore>, StartError> {
    let settings = &config.store;
    let url = redact_url(&settings.database_url);
    let started = Instant::now();
    let mut delay = Duration::from_millis(250);
    let mut attempt = 1u32;
    let store = loop {
        let opened = async {
            let store =
                store::connect(&settings.database_url, settings.pool_size, settings.timeout)
                    .await
                    .map_err(|source| StartError::Store {
                        url: url.clone(),
                        source,
                    })?;
            store.migrate().await.map_err(StartError::Migrate)?;
            Ok::<_, StartError>(store)
        }
        .await;
        let source = match opened {
            Ok(store) => {
                if attempt > 1 {
                    tracing::info!(store = %url, attempts = attempt, "store reachable; starting");
                }
                break store;
            }
            // Only "cannot reach it now" is worth waiting for; a wrong schema or URL is not.
            Err(StartError::Store {
                source: source @ StoreError::Unavailable(_),
                ..
            })
            | Err(StartError::Migrate(source @ StoreError::Unavailable(_))) => source,
            Err(other) => return Err(other),
        };
        let waited = started.elapsed();
        if waited + delay > settings.wait {
            return Err(StartError::StoreWait {
                url,
                waited_secs: waited.as_secs(),
                source,
            });
        }
        tracing::warn!(
            store = %url,
            attempt,
            retry_in_ms = delay.as_millis() as u64,
            waited_secs = waited.as_secs(),
            max_wait_secs = settings.wait.as_secs(),
            error = %source,
            "store not reachable; waiting for it"
        );
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
        attempt += 1;
    };
    Ok(store)
}

/// The accept path's inserts into `store`, committed in groups.
fn group_commit(config: &Config, store: &Arc<dyn EventStore>) -> Result<GroupCommit, StartError> {
    let settings = &config.store;
    let group = GroupCommitSettings {
        window: settings.batch_window,
        max_batch: settings.batch_max,
        concurrency: group_concurrency(store.backend(), settings.pool_size),
        max_queued: settings.timeout,
        replay_window: settings.replay_window,
    };
    GroupCommit::new(store.clone(), group).map_err(|source| StartError::Store {
        url: redact_url(&settings.database_url),
        source,
    })
}

/// Batches committing at once. SQLite has one writer, so a second batch would only wait for
/// the lock while it could be growing. PostgreSQL commits several at once (and flushes their
/// WAL together); a quarter of the pool leaves the rest to the workers.
fn group_concurrency(backend: &str, pool_size: u32) -> usize {
    match backend {
        "sqlite" => 1,
        _ => (pool_size as usize / 4).max(1),
    }
}

/// A started hookd: its address, and the handle to stop it.
pub struct Running {
    /// Where the HTTP server listens (None without the api role).
    pub addr: Option<SocketAddr>,
    /// Where `/health` and `/metrics` are served apart from the public listener: with the api
    /// role when `HOOKD_INTERNAL_ADDR` is set, always in a worker-only process.
    pub internal_addr: Option<SocketAddr>,
    pub store: Arc<dyn EventStore>,
    pub queue: Arc<dyn Queue>,
    redis: Option<Arc<RedisQueue>>,
    draining: watch::Sender<bool>,
    /// How long to drain before shutting down (zero without the API).
    ready_delay: Duration,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// A name for this process, unique across the fleet: lease owner and Redis consumer name.
pub fn instance_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "hookd".to_owned());
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}:{}:{}", std::process::id(), &nonce[..8])
}

impl Running {
    /// Start draining, the first step of a shutdown: `/health/ready` answers 503 and every
    /// answer carries `Connection: close`, while everything is still served (listener open,
    /// workers working), so load balancers move their traffic away before the listener closes.
    pub fn drain(&self) {
        let _ = self.draining.send(true);
    }

    /// How long to drain before [`Running::shutdown`]: `HOOKD_SHUTDOWN_READY_DELAY_MS` with the
    /// API; zero without it (no load balancer sends a worker-only process anything).
    pub fn ready_delay(&self) -> Duration {
        self.ready_delay
    }

    /// Ask every part to stop: the server stops accepting and finishes in-flight requests,
    /// workers finish in-flight steps and hand back their leases. Drains too, if it was not.
    pub fn shutdown(&self) {
        let _ = self.draining.send(true);
        let _ = self.shutdown.send(true);
    }

    /// Wait until every part has stopped.
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
        // Accepted events whose enqueue is still buffered: write them now rather than leave
        // them to the sweeper.
        if let Some(redis) = self.redis {
            redis.flush(Duration::from_secs(5)).await;
        }
    }
}

/// Bind a listener; the address it got (port 0 picks one).
async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })?;
    Ok((listener, local))
}

/// Start the roles asked for. Returns once the server is listening.
pub async fn start(config: &Config, roles: Roles) -> Result<Running, StartError> {
    // Install the metrics recorder before anything records.
    crate::telemetry::metrics::handle();
    let store = open_store(config).await?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (draining, draining_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let instance = instance_name();
    let redis = config
        .redis
        .as_ref()
        .map(|r| RedisQueue::start(r, store.clone(), config.worker.poll_interval));
    let queue: Arc<dyn Queue> = match &redis {
        Some(r) => {
            tasks.push(tokio::spawn(
                r.clone().run_sweeper(instance.clone(), shutdown_rx.clone()),
            ));
            r.clone()
        }
        None => Arc::new(StoreQueue::new(store.clone())),
    };
    let parts = Parts {
        store: store.clone(),
        queue: queue.clone(),
        shutdown: shutdown_rx,
        draining: draining_rx,
    };

    // Bind first: a taken port should stop start-up before any worker claims an event.
    let listener = if roles.api {
        Some(bind(SocketAddr::new(config.http.bind, config.http.port)).await?)
    } else {
        None
    };
    let internal = bind_internal(config, roles).await?;
    let internal_addr = internal.as_ref().map(|(_, a)| *a);
    // Breaker state lives with the workers of this process; an api-only process has none.
    let (destinations, heartbeat) = if roles.workers {
        let (d, h) = start_workers(config, &parts, instance, &mut tasks)?;
        (Some(d), Some(h))
    } else {
        (None, None)
    };
    let health = health_state(config, &parts, roles, destinations.clone(), heartbeat);
    if let Some(internal) = internal {
        serve_internal(config, &parts, internal, health.clone(), &mut tasks);
    }
    let addr = listener.as_ref().map(|(_, local)| *local);
    if let Some(listener) = listener {
        let internal = internal_addr.is_some();
        start_api(
            config,
            &parts,
            destinations,
            health,
            (listener, internal),
            &mut tasks,
        )
        .await?;
    }

    Ok(Running {
        addr,
        internal_addr,
        store,
        queue,
        redis,
        draining,
        ready_delay: if roles.api {
            config.http.shutdown_ready_delay
        } else {
            Duration::ZERO
        },
        shutdown,
        tasks,
    })
}

/// What health and metrics read, for every listener of this process.
fn health_state(
    config: &Config,
    parts: &Parts,
    roles: Roles,
    destinations: Option<Arc<Destinations>>,
    workers: Option<Arc<Heartbeat>>,
) -> Arc<HealthState> {
    Arc::new(HealthState {
        store: parts.store.clone(),
        queue: parts.queue.clone(),
        destinations,
        workers,
        memory_limit_bytes: config.http.memory_limit_bytes,
        shutting_down: parts.draining.clone(),
        // A worker without its queue processes nothing; an api still accepts and commits.
        ready_needs_queue: !roles.api,
        backlog: Default::default(),
    })
}

/// The internal listener's socket, when this process has one (see
/// [`crate::http::HttpSettings::internal_listener`]).
async fn bind_internal(
    config: &Config,
    roles: Roles,
) -> Result<Option<(TcpListener, SocketAddr)>, StartError> {
    let Some(addr) = config.http.internal_listener(roles.api) else {
        return Ok(None);
    };
    bind(addr).await.map(Some).map_err(|e| match e {
        StartError::Bind { addr, source } => StartError::InternalBind { addr, source },
        other => other,
    })
}

/// What every role shares.
struct Parts {
    store: Arc<dyn EventStore>,
    queue: Arc<dyn Queue>,
    shutdown: watch::Receiver<bool>,
    /// Turns true when draining starts, before `shutdown` does.
    draining: watch::Receiver<bool>,
}

/// The worker pool and payload retention; returns this process's destination breakers and the
/// worker loop's heartbeat.
fn start_workers(
    config: &Config,
    parts: &Parts,
    instance: String,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Result<(Arc<Destinations>, Arc<Heartbeat>), StartError> {
    let actions = &config.actions;
    let router = Router::new(
        &actions.routes,
        actions.smtp.as_ref().map(|s| s.destination()),
    );
    let destinations = Arc::new(Destinations::new(
        actions.breaker,
        actions.destination_concurrency,
        router.provider_destinations(),
    ));
    let worker = Arc::new(Worker::new(
        parts.store.clone(),
        parts.queue.clone(),
        router,
        Actions::new(actions)?,
        destinations.clone(),
        instance,
        config.worker.clone(),
    ));
    let heartbeat = worker.heartbeat();
    tasks.push(tokio::spawn(worker.run(parts.shutdown.clone())));
    if let Some(keep) = config.operator.retention {
        tasks.push(tokio::spawn(crate::ops::retention::run(
            parts.store.clone(),
            keep,
            parts.shutdown.clone(),
        )));
    }
    Ok((destinations, heartbeat))
}

/// The internal listener: health and metrics only, plain HTTP (`HOOKD_INTERNAL_ADDR`; always
/// in a worker-only process).
fn serve_internal(
    config: &Config,
    parts: &Parts,
    (listener, local): (TcpListener, SocketAddr),
    health: Arc<HealthState>,
    tasks: &mut Vec<JoinHandle<()>>,
) {
    tracing::info!(addr = %local, "internal listener: /health, /health/live, /health/ready and /metrics");
    let settings = ServerSettings {
        limits: config.http.limits.clone(),
        tls: None,
        grace: config.shutdown_timeout,
        draining: parts.draining.clone(),
    };
    tasks.push(tokio::spawn(server::serve(
        listener,
        http::internal_router(health),
        settings,
        parts.shutdown.clone(),
    )));
}

/// The HTTP server: webhooks, health, metrics, the admin API and the console.
async fn start_api(
    config: &Config,
    parts: &Parts,
    destinations: Option<Arc<Destinations>>,
    health: Arc<HealthState>,
    ((listener, local), internal): ((TcpListener, SocketAddr), bool),
    tasks: &mut Vec<JoinHandle<()>>,
) -> Result<(), StartError> {
    let providers = Arc::new(Providers::from_config(&config.providers)?);
    let ops = start_ops(config, parts, providers.clone(), destinations).await?;
    let http = &config.http;
    let tls = http.tls.as_ref().map(TlsListener::new).transpose()?;
    let names: Vec<&str> = providers.names().collect();
    tracing::info!(addr = %local, tls = tls.is_some(), store = parts.store.backend(), queue = parts.queue.kind(), providers = ?names, "listening");
    let admission = http::limits::Admission::new(
        &http.limits,
        http.max_body_bytes,
        config.providers.iter().map(|p| p.name.as_str()),
    );
    let state = Arc::new(AppState {
        intake: group_commit(config, &parts.store)?,
        store: parts.store.clone(),
        queue: parts.queue.clone(),
        providers,
        ops,
        max_body_bytes: http.max_body_bytes,
        health,
        limits: http.limits.clone(),
        admission,
        access: http::AccessGuard::new(http.admin_access.clone()),
        schemas: http.schemas.clone(),
    });
    let app = http::router(state, internal);
    if let Some(tls) = &tls {
        tasks.push(tokio::spawn(tls.clone().watch(parts.shutdown.clone())));
    }
    let settings = ServerSettings {
        limits: http.limits.clone(),
        tls,
        // In-flight requests get the grace period; a client that holds its connection
        // longer is cut off.
        grace: config.shutdown_timeout,
        draining: parts.draining.clone(),
    };
    tasks.push(tokio::spawn(server::serve(
        listener,
        app,
        settings,
        parts.shutdown.clone(),
    )));
    Ok(())
}

/// The operator surface, over the store and its read replica.
async fn start_ops(
    config: &Config,
    parts: &Parts,
    providers: Arc<Providers>,
    destinations: Option<Arc<Destinations>>,
) -> Result<Arc<Ops>, StartError> {
    let ops = Ops::new(
        OpsParts {
            store: parts.store.clone(),
            reads: open_reads(config, &parts.store).await?,
            queue: parts.queue.clone(),
            providers,
            destinations,
            session_ttl: config.operator.session_ttl,
            secure_cookies: config
                .public_url
                .as_deref()
                .is_some_and(|u| u.starts_with("https://")),
            shutdown: parts.shutdown.clone(),
        },
        &config.operator.tokens,
    );
    Ok(Arc::new(ops))
}

/// Where admin reads go: a read replica when one is configured (never migrated or written
/// to), else the store itself.
async fn open_reads(
    config: &Config,
    store: &Arc<dyn EventStore>,
) -> Result<Arc<dyn EventStore>, StartError> {
    let Some(url) = &config.operator.read_database_url else {
        return Ok(store.clone());
    };
    store::connect(url, config.store.pool_size, config.store.timeout)
        .await
        .map_err(|source| StartError::Store {
            url: redact_url(url),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Forwards never go out without the egress policy or with redirects on: a forward client
    /// that cannot be built stops start-up, before any worker claims an event.
    #[tokio::test]
    async fn start_up_stops_when_the_forward_client_cannot_be_built() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::from_vars([
            ("HOOKD_CONFIG".to_owned(), "/dev/null".to_owned()),
            (
                "DATABASE_URL".to_owned(),
                format!("sqlite://{}", dir.path().join("hookd.db").display()),
            ),
        ])
        .unwrap();
        // A header value with a line break: the real client builder refuses it.
        config.actions.forward.user_agent = "hookd\n1".into();
        // Any free port for the worker's health listener, not the default 9090.
        config.http.internal_addr = Some(([127, 0, 0, 1], 0).into());
        let roles = Roles {
            api: false,
            workers: true,
        };
        let Err(err) = start(&config, roles).await else {
            panic!("hookd started without its forward client");
        };
        assert!(
            matches!(err, StartError::Actions(SetupError::ForwardClient { .. })),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("cannot build the forward HTTP client"),
            "{err}"
        );
    }
}
