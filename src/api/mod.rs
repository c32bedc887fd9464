//! The HTTP API of compat.md §5: read-only, over LMDB read transactions, off the sensor cores.
//!
//! [`start`] binds the listen address, then serves on its own thread (`api`) with a tokio
//! current-thread runtime and hyper's HTTP/1 server; [`ApiHandle::stop`] shuts it down
//! gracefully. Per request: [`route`] (pure) turns the target into a [`route::Route`],
//! `service` checks size, CORS preflight, the bearer token and the method, reads the store and
//! renders the body with [`render`] (pure). [`ApiMetrics`] counts responses and latency and is
//! rendered in `/metrics` after every [`Render`] given to [`start`].
//!
//! Never: writes to LMDB, returns unpaginated results, lets a client block the sensor, answers
//! without the compat headers (responses hyper writes itself on malformed HTTP excepted).
//!
//! Limits: [`limits::API_CONNECTIONS_MAX`] (over it a connection is closed at once, counter
//! `api_connections_refused_total`), [`limits::API_URI_BYTES_MAX`] (414),
//! [`limits::API_REQUEST_HEAD_BYTES_MAX`] and [`limits::API_REQUEST_HEADERS_COUNT_MAX`] (431 and
//! close), [`limits::API_HEADER_READ_TIMEOUT`] (close), [`limits::API_PAGE_ITEMS_MAX`],
//! [`limits::API_EVENTS_PAGE_ITEMS_MAX`], [`limits::API_BLOCKING_THREADS_MAX`].

mod dashboard;
pub mod dashboard_api;
mod metrics;
pub mod render;
pub mod route;
mod service;
mod stall;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

pub use metrics::ApiMetrics;

use crate::config::ApiConfig;
use crate::config::limits;
use crate::metrics::Render;
use crate::store::Store;
use crate::worker_thread::WorkerThread;
use service::State;

/// Errors starting the API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot listen on {address} for the API: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the API runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot start the API thread: {0}")]
    Spawn(std::io::Error),
}

/// Settings that are not part of the configuration (tests and tools).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiOptions {
    /// Time a client has to send a request head; then its connection is closed.
    pub header_read_timeout: Duration,
    /// Open connections; more are closed at once.
    pub connections_max: usize,
    /// How long a response write may stay blocked on a client that does not read; then the
    /// connection is closed.
    pub write_stall_timeout: Duration,
}

impl Default for ApiOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: limits::API_HEADER_READ_TIMEOUT,
            connections_max: limits::API_CONNECTIONS_MAX,
            write_stall_timeout: limits::API_WRITE_STALL_TIMEOUT,
        }
    }
}

/// The running API server.
#[derive(Debug)]
pub struct ApiHandle {
    thread: WorkerThread,
    shutdown: watch::Sender<bool>,
    local_addr: SocketAddr,
    metrics: Arc<ApiMetrics>,
}

impl ApiHandle {
    /// The address the API listens on (the real port when the configuration asked for 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The API's own counters.
    pub fn metrics(&self) -> Arc<ApiMetrics> {
        Arc::clone(&self.metrics)
    }

    /// Stops accepting, lets open requests finish (at most a few seconds), and joins the thread.
    pub fn stop(self) {
        let _ = self.shutdown.send(true);
        self.thread.join();
    }
}

/// Binds `config.listen` and serves the API on its own thread.
pub fn start(
    config: &ApiConfig,
    store: Store,
    metrics: Vec<Arc<dyn Render>>,
) -> Result<ApiHandle, ApiError> {
    start_with(config, store, metrics, ApiOptions::default())
}

/// [`start`] with explicit [`ApiOptions`].
pub fn start_with(
    config: &ApiConfig,
    store: Store,
    metrics: Vec<Arc<dyn Render>>,
    options: ApiOptions,
) -> Result<ApiHandle, ApiError> {
    let bind_error = |source| ApiError::Bind {
        address: config.listen,
        source,
    };
    let listener = std::net::TcpListener::bind(config.listen).map_err(bind_error)?;
    listener.set_nonblocking(true).map_err(bind_error)?;
    let local_addr = listener.local_addr().map_err(bind_error)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .max_blocking_threads(limits::API_BLOCKING_THREADS_MAX)
        .thread_name("api-read")
        .build()
        .map_err(ApiError::Runtime)?;
    let api_metrics = Arc::new(ApiMetrics::default());
    let state = Arc::new(State {
        store,
        renders: metrics,
        metrics: Arc::clone(&api_metrics),
        token: config.token.clone(),
        verified_only: config.verified_only,
        error_logged_ns: AtomicU64::new(0),
    });
    let (shutdown, stopping) = watch::channel(false);
    let thread = WorkerThread::spawn("api", move || {
        runtime.block_on(async move {
            match TcpListener::from_std(listener) {
                Ok(listener) => serve(listener, state, stopping, options).await,
                Err(error) => eprintln!("sentrypeer: API listener: {error}"),
            }
        });
        runtime.shutdown_timeout(limits::API_SHUTDOWN_GRACE);
    })
    .map_err(ApiError::Spawn)?;
    Ok(ApiHandle {
        thread,
        shutdown,
        local_addr,
        metrics: api_metrics,
    })
}

/// Resolves when a stop was asked for (or the handle was dropped).
async fn stop_requested(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await;
}

/// The accept loop: one task per connection, at most `connections_max` at once.
async fn serve(
    listener: TcpListener,
    state: Arc<State>,
    mut stopping: watch::Receiver<bool>,
    options: ApiOptions,
) {
    let permits = Arc::new(Semaphore::new(options.connections_max));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = stop_requested(&mut stopping) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                        state.metrics.connections_refused_total.inc();
                        drop(stream);
                        continue;
                    };
                    state.metrics.connections_total.inc();
                    let state = Arc::clone(&state);
                    let stopping = stopping.clone();
                    connections.spawn(async move {
                        connection(stream, state, stopping, options).await;
                        drop(permit);
                    });
                }
                Err(_) => tokio::time::sleep(limits::API_ACCEPT_ERROR_PAUSE).await,
            },
        }
    }
    drop(listener);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(limits::API_SHUTDOWN_GRACE, drained)
        .await
        .is_err()
    {
        connections.abort_all();
    }
}

/// Serves one connection until the client closes it, a limit closes it, or the API stops.
async fn connection(
    stream: TcpStream,
    state: Arc<State>,
    mut stopping: watch::Receiver<bool>,
    options: ApiOptions,
) {
    let _ = stream.set_nodelay(true);
    let io = stall::StallGuard::new(
        stream,
        options.write_stall_timeout,
        Arc::clone(&state.metrics),
    );
    let service = service_fn(move |request| service::handle(Arc::clone(&state), request));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout)
        .max_buf_size(limits::API_REQUEST_HEAD_BYTES_MAX)
        .max_header_size(limits::API_REQUEST_HEAD_BYTES_MAX)
        .max_headers(limits::API_REQUEST_HEADERS_COUNT_MAX);
    let served = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(served);
    tokio::select! {
        _ = served.as_mut() => {}
        () = stop_requested(&mut stopping) => {
            served.as_mut().graceful_shutdown();
            let _ = served.await;
        }
    }
}
