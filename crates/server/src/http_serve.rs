//! The accept loop: axum's router served by hyper with the limits `axum::serve` lacks.
//! axum 0.8's `serve` builds hyper's connection without a timer, so hyper's
//! `header_read_timeout` never fires and a client that sends its headers one byte a
//! minute (slowloris) holds a connection forever. Here:
//!
//! - the headers of each request (and the wait for the next one on a kept-alive
//!   connection) must arrive within `--header-timeout-secs`, else the connection closes;
//! - a request body may pause at most `--body-timeout-secs` between two pieces
//!   (tower-http's `RequestBodyTimeout`; the handler then answers 408);
//! - at most `--max-connections` connections are open at once (a semaphore in the
//!   accept loop: the next connection is accepted when one closes);
//! - graceful shutdown as `axum::serve` does it: stop accepting, let open connections
//!   finish their requests, then return.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutBody};

/// Limits of the transport, from the config.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
}

/// Connections open now, for `/metrics`.
#[derive(Debug, Default)]
pub struct Connections {
    open: AtomicUsize,
}

impl Connections {
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }
}

struct Opened(Arc<Connections>);

impl Drop for Opened {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then waits for the open
/// connections to end (each is told to close after its current request).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    connections: Arc<Connections>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop_sender, stop) = watch::channel(false);
    let service = tower::ServiceBuilder::new()
        .layer(RequestBodyTimeoutLayer::new(limits.body_timeout))
        .map_request(|request: axum::http::Request<TimeoutBody<Incoming>>| request.map(Body::new))
        .service(router);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!("cannot accept a connection: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        connections.open.fetch_add(1, Ordering::Relaxed);
        let opened = Opened(connections.clone());
        let service = TowerToHyperService::new(service.clone());
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _opened = opened;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .keep_alive(true);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!("connection from {remote}: {error}");
                    }
                    return;
                }
                _ = stop.wait_for(|stop| *stop) => {}
            }
            connection.as_mut().graceful_shutdown();
            if let Err(error) = connection.await {
                tracing::debug!("connection from {remote}: {error}");
            }
        });
    }
    drop(listener);
    let _ = stop_sender.send(true);
    // Every connection holds a permit until it ends: all permits back means all closed.
    let _ = permits
        .acquire_many(u32::try_from(limits.max_connections.max(1)).unwrap_or(u32::MAX))
        .await;
    Ok(())
}
