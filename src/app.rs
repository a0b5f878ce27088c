//! Wiring: builds the store, queue, workers and HTTP server from a [`Config`] and runs them
//! until shutdown. Used by `main` and by the integration tests, so both run the same code.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::actions::breaker::Destinations;
use crate::actions::rate::{LocalKeeper, RateKeeper, RateLimits};
use crate::actions::{Actions, SetupError};
use crate::config::Config;
use crate::http::group_commit::{GroupCommit, GroupCommitSettings};
use crate::http::server::{self, ServerSettings};
use crate::http::tls::{TlsError, TlsListener};
use crate::http::{self, AppState, HealthState};
use crate::live::{Live, LiveError};
use crate::ops::{Ops, OpsParts};
use crate::queue::{Queue, RedisQueue, StoreQueue};
use crate::store::{self, EventStore, StoreError, redact_url};
use crate::telemetry::liveness::Heartbeat;
use crate::worker::{Handover, Worker};

mod live;
mod opening;
mod running;

pub use self::opening::{Schema, open_store};
pub use self::running::Running;

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
    #[error(
        "the database lacks migrations {missing:?} of this release and HOOKD_AUTO_MIGRATE is \
         off: run `hookd migrate` (the migration Job) first"
    )]
    SchemaBehind { missing: Vec<i64> },
    #[error(transparent)]
    Live(#[from] LiveError),
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

/// The accept path's inserts into `store`, committed in groups; with `handover`, new events go
/// straight to this process's workers when they have room.
fn group_commit(
    config: &Config,
    store: &Arc<dyn EventStore>,
    handover: Option<Handover>,
) -> Result<GroupCommit, StartError> {
    let settings = &config.store;
    let group = GroupCommitSettings {
        window: settings.batch_window,
        max_batch: settings.batch_max,
        concurrency: group_concurrency(store.backend(), settings.pool_size),
        max_queued: settings.timeout,
        replay_window: settings.replay_window,
    };
    GroupCommit::new(store.clone(), group, handover).map_err(|source| StartError::Store {
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

/// A name for this process, unique across the fleet: lease owner and Redis consumer name.
pub fn instance_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "hookd".to_owned());
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}:{}:{}", std::process::id(), &nonce[..8])
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
    let store = open_store(config, Schema::at_start(&config.store)).await?;
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (draining, draining_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    let instance = instance_name();
    let (redis, queue) = start_queue(config, &store, roles, &instance, &shutdown_rx, &mut tasks);
    let live = live::start(config, &store, &shutdown_rx, &mut tasks).await?;
    let parts = Parts {
        store: store.clone(),
        queue: queue.clone(),
        rates: match &redis {
            Some(r) => r.clone(),
            None => Arc::new(LocalKeeper::default()),
        },
        live,
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
    let (destinations, heartbeat, handover) = if roles.workers {
        let (d, beat, h) = start_workers(config, &parts, instance, &mut tasks)?;
        (Some(d), Some(beat), Some(h))
    } else {
        (None, None, None)
    };
    let health = health_state(config, &parts, roles, destinations.clone(), heartbeat);
    if let Some(internal) = internal {
        serve_internal(config, &parts, internal, health.clone(), &mut tasks);
    }
    let addr = listener.as_ref().map(|(_, local)| *local);
    if let Some(listener) = listener {
        start_api(
            config,
            &parts,
            Local {
                destinations,
                handover,
            },
            health,
            (listener, internal_addr.is_some()),
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

/// The queue: Redis Streams (with its sweeper, and its partition readers in a worker process)
/// when Redis is configured, else the store itself.
fn start_queue(
    config: &Config,
    store: &Arc<dyn EventStore>,
    roles: Roles,
    instance: &str,
    shutdown: &watch::Receiver<bool>,
    tasks: &mut Vec<JoinHandle<()>>,
) -> (Option<Arc<RedisQueue>>, Arc<dyn Queue>) {
    let redis = config
        .redis
        .as_ref()
        .map(|r| RedisQueue::start(r, store.clone(), config.worker.poll_interval));
    let queue: Arc<dyn Queue> = match &redis {
        Some(r) => {
            tasks.push(tokio::spawn(
                r.clone().run_sweeper(instance.to_owned(), shutdown.clone()),
            ));
            // Only worker processes read partitions; read-ahead up to one message per worker.
            if roles.workers {
                tasks.push(r.consume(
                    instance.to_owned(),
                    config.worker.lease,
                    config.worker.concurrency,
                    shutdown.clone(),
                ));
            }
            r.clone()
        }
        None => Arc::new(StoreQueue::new(store.clone())),
    };
    (redis, queue)
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
    /// Where destination rate limits keep their schedules: shared in Redis when the queue is
    /// there, else in this process.
    rates: Arc<dyn RateKeeper>,
    /// The providers and routes, as the file and the stored configuration define them.
    live: Arc<Live>,
    shutdown: watch::Receiver<bool>,
    /// Turns true when draining starts, before `shutdown` does.
    draining: watch::Receiver<bool>,
}

/// What the API of a process shares with its own workers (nothing without the workers role).
struct Local {
    destinations: Option<Arc<Destinations>>,
    handover: Option<Handover>,
}

/// The worker pool and payload retention; returns this process's destination breakers, the
/// worker loop's heartbeat and the handover of accepted events to its workers.
fn start_workers(
    config: &Config,
    parts: &Parts,
    instance: String,
    tasks: &mut Vec<JoinHandle<()>>,
) -> Result<(Arc<Destinations>, Arc<Heartbeat>, Handover), StartError> {
    let actions = &config.actions;
    let router = parts.live.router();
    let destinations = Arc::new(Destinations::new(
        actions.breaker,
        actions.destination_concurrency,
        router.load().provider_destinations(),
        RateLimits::new(actions.rate_limits.clone(), parts.rates.clone()),
    ));
    parts.live.set_breakers(destinations.clone());
    let actions = Actions::new(actions)?;
    let brokers = actions.brokers();
    let worker = Arc::new(Worker::new(
        parts.store.clone(),
        parts.queue.clone(),
        router,
        actions,
        destinations.clone(),
        instance,
        config.worker.clone(),
    ));
    let heartbeat = worker.heartbeat();
    let handover = worker.handover();
    let run = tokio::spawn(worker.run(parts.shutdown.clone()));
    // Broker connections close once the workers have finished their in-flight steps.
    tasks.push(tokio::spawn(async move {
        let _ = run.await;
        brokers.close().await;
    }));
    if let Some(keep) = config.operator.retention {
        tasks.push(tokio::spawn(crate::ops::retention::run(
            parts.store.clone(),
            keep,
            parts.shutdown.clone(),
        )));
    }
    Ok((destinations, heartbeat, handover))
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
    Local {
        destinations,
        handover,
    }: Local,
    health: Arc<HealthState>,
    ((listener, local), internal): ((TcpListener, SocketAddr), bool),
    tasks: &mut Vec<JoinHandle<()>>,
) -> Result<(), StartError> {
    let providers = parts.live.providers();
    let ops = start_ops(config, parts, destinations).await?;
    let http = &config.http;
    let tls = http.tls.as_ref().map(TlsListener::new).transpose()?;
    let current = providers.load();
    let names: Vec<&str> = current.names().collect();
    tracing::info!(addr = %local, tls = tls.is_some(), store = parts.store.backend(), queue = parts.queue.kind(), providers = ?names, "listening");
    let admission = http::limits::Admission::new(
        &http.limits,
        http.max_body_bytes,
        config.providers.iter().map(|p| p.name.as_str()),
    );
    let state = Arc::new(AppState {
        intake: group_commit(config, &parts.store, handover)?,
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
        stored_schemas: parts.live.schemas(),
        routes: parts.live.router(),
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
    destinations: Option<Arc<Destinations>>,
) -> Result<Arc<Ops>, StartError> {
    let ops = Ops::new(
        OpsParts {
            store: parts.store.clone(),
            reads: open_reads(config, &parts.store).await?,
            queue: parts.queue.clone(),
            live: parts.live.clone(),
            destinations,
            session_ttl: config.operator.session_ttl,
            secure_cookies: config
                .public_url
                .as_deref()
                .is_some_and(|u| u.starts_with("https://")),
            shutdown: parts.shutdown.clone(),
            stream: config.operator.stream,
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
