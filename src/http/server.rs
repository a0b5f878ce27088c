//! The listener: accepts TCP connections (optionally TLS) and serves the router over HTTP/1.1
//! with hyper, with the limits `axum::serve` does not have: a cap on open connections, a
//! deadline for the TLS handshake and the request headers (slow clients cannot hold a
//! connection), a size limit on the headers (431) and on their number. Each request carries
//! the client's address (`ConnectInfo`) for the admin allow-list.
//!
//! While the process drains (shutdown has been asked for, the listener is still open: see
//! `HOOKD_SHUTDOWN_READY_DELAY_MS`) it serves every request as usual, and each answer carries
//! `Connection: close`, so keep-alive clients (a load balancer's pooled connections) reconnect,
//! and find another instance. On shutdown it stops accepting, lets in-flight requests finish
//! (keep-alive connections are closed after their current request) and cuts whatever is left
//! after the grace period. It must never drop a connection whose request is being handled
//! before the grace period ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use super::Limits;
use super::tls::TlsListener;

/// How the listener treats connections.
#[derive(Clone)]
pub struct ServerSettings {
    pub limits: Limits,
    pub tls: Option<Arc<TlsListener>>,
    /// How long in-flight requests get after shutdown starts.
    pub grace: Duration,
    /// Turns true when the process starts draining: answers then ask clients to reconnect.
    pub draining: watch::Receiver<bool>,
}

/// Serve `app` on `listener` until `shutdown` turns true, then drain.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    settings: ServerSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let connections = Arc::new(Semaphore::new(settings.limits.max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(settings.limits.header_timeout)
        .max_header_size(settings.limits.max_header_bytes)
        .max_headers(settings.limits.max_headers);
    let stop = async {
        let _ = shutdown.wait_for(|s| *s).await;
    };
    tokio::pin!(stop);
    loop {
        // At the connection cap, stop accepting: new clients wait in the kernel's backlog.
        let permit = tokio::select! {
            p = connections.clone().acquire_owned() => p.expect("never closed"),
            _ = &mut stop => break,
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let _ = tcp.set_nodelay(true);
        let watcher = graceful.watcher();
        let http = http.clone();
        let app = app.clone();
        let tls = settings.tls.clone();
        let draining = settings.draining.clone();
        let handshake_timeout = settings.limits.header_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => serve_connection(tcp, (peer, draining), app, http, watcher).await,
                Some(tls) => {
                    match tokio::time::timeout(handshake_timeout, tls.acceptor().accept(tcp)).await
                    {
                        Ok(Ok(stream)) => {
                            serve_connection(stream, (peer, draining), app, http, watcher).await
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(settings.grace) => {
            tracing::warn!("shutdown grace period over; closing remaining connections");
        }
    }
}

async fn serve_connection<I>(
    io: I,
    (peer, draining): (SocketAddr, watch::Receiver<bool>),
    app: Router,
    http: hyper::server::conn::http1::Builder,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let answer = tower::ServiceExt::oneshot(app.clone(), request);
        let draining = draining.clone();
        async move {
            let mut response = answer.await?;
            // Read when the answer is ready, not when the request came: a request that was
            // being handled when the drain began still tells its client to move. hyper closes
            // the connection after an answer that says so.
            if *draining.borrow() {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let conn = http.serve_connection(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(conn).await {
        // Clients that go away, time out or send garbage: theirs to worry about.
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
