//! The HTTP server of one handler container: its listeners, its connections (HTTP/1.1, and HTTP/2 with prior
//! knowledge, told apart by hyper-util from the connection's first bytes), the bound on requests in flight,
//! and the stop.
//!
//! Everything runs on the container's instance thread (`pod::instance`), whose single-threaded runtime drives
//! connections and handler instances as tasks: the thread holds the container's identity, so every file access
//! a handler makes is checked against it, as for a command container. A stop first drains (listeners close,
//! idle connections close, HTTP/2 sends GOAWAY, requests in flight finish, each instance included) and the
//! container then exits 0; the run's hard stop (the stop timeout passed) ends whatever is left, exit 137.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::SelectAll;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_stream::wrappers::TcpListenerStream;
use wasmtime::component::Component;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use super::pool::Pool;
use super::request::Handler;
use super::{HttpServing, ports};
use crate::engine::error::boxed;
use crate::engine::p1_sockets::Listeners;
use crate::engine::run::{BeforeGuest, RunSpec, before_guest};
use crate::engine::{EngineError, ExitStatus};

/// How long the accept loop waits after a failed accept (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Tasks of the server (connections and request instances): all end when the server ends.
#[derive(Clone, Default)]
pub(super) struct Tasks(Arc<Mutex<JoinSet<()>>>);

impl Tasks {
    pub(super) fn spawn(&self, task: Pin<Box<dyn Future<Output = ()> + Send>>) {
        // Plain data: still consistent if a holder panicked.
        let mut set = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // Forget finished tasks, so a long-running server does not accumulate them.
        while set.try_join_next().is_some() {}
        set.spawn(task);
    }

    fn abort_all(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).abort_all();
    }
}

/// Serves `component` (compiled by the shared engine) until `stop`, or until a drain asked by `http` is done.
pub async fn serve(
    component: &Component,
    spec: RunSpec,
    http: HttpServing,
    hook: Option<BeforeGuest>,
    stop: impl Future<Output = ()>,
) -> ExitStatus {
    let handler = match prepare(component, spec) {
        Ok(handler) => handler,
        Err(e) => return ExitStatus::not_started(&e),
    };
    // Bound before the container's identity is taken, as a runtime sets up a container's sockets: a port
    // below 1024 needs no capability of the guest's.
    let ports = ports(&handler.spec.listen_ports);
    let listeners = match Listeners::bind(&ports) {
        Ok(l) => l,
        Err(e) => return ExitStatus::not_started(&e),
    };
    if let Some(refused) = before_guest(hook) {
        return refused;
    }
    let mut accepts = SelectAll::new();
    for (port, listener) in listeners.into_listeners() {
        let listener = listener
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpListener::from_std(listener));
        match listener {
            Ok(l) => accepts.push(TcpListenerStream::new(l)),
            Err(e) => return ExitStatus::not_started(&ListenerError { port, source: e }),
        }
    }
    tracing::info!(
        ?ports,
        max_concurrency = http.max_concurrency,
        "serving wasi:http"
    );

    let tasks = Tasks::default();
    let serving = run_server(Arc::new(handler), accepts, http, tasks.clone());
    let status = tokio::select! {
        biased;
        () = stop => ExitStatus::killed(),
        () = serving => ExitStatus::exited(0, ""),
    };
    tasks.abort_all();
    status
}

/// A listener that could not be handed to the async runtime.
#[derive(Debug, thiserror::Error)]
#[error("serving TCP port {port}")]
struct ListenerError {
    port: u16,
    #[source]
    source: std::io::Error,
}

/// The handler: the component moved into the pooling engine and checked against the `wasi:http/proxy` world
/// once, so that a request only instantiates.
fn prepare(component: &Component, spec: RunSpec) -> Result<Handler, EngineError> {
    let pool = Pool::shared()?;
    let component = pool.adopt(component)?;
    let pre = pool
        .linker()
        .instantiate_pre(&component)
        .and_then(ProxyPre::new)
        .map_err(|e| EngineError::LinkHandler { source: boxed(e) })?;
    Ok(Handler { pool, pre, spec })
}

async fn run_server(
    handler: Arc<Handler>,
    mut accepts: SelectAll<TcpListenerStream>,
    http: HttpServing,
    tasks: Tasks,
) {
    let HttpServing {
        max_concurrency,
        mut drain,
    } = http;
    let slots = Arc::new(Semaphore::new(max_concurrency));
    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            // A stop request, or the container forgotten (sender dropped).
            _ = &mut drain => break,
            next = accepts.next() => match next {
                Some(Ok(stream)) => stream,
                Some(Err(error)) => {
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
                None => break,
            },
        };
        let _ = stream.set_nodelay(true);
        let (handler, slots, spawner) = (Arc::clone(&handler), Arc::clone(&slots), tasks.clone());
        let service = service_fn(move |req| {
            let (handler, slots, spawner) =
                (Arc::clone(&handler), Arc::clone(&slots), spawner.clone());
            async move {
                // Never closed, so this only waits for a free slot.
                let permit = match slots.acquire_owned().await {
                    Ok(permit) => permit,
                    Err(_) => return Ok(super::request::unavailable()),
                };
                handler.handle(req, permit, &spawner).await
            }
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tasks.spawn(Box::pin(async move {
            if let Err(error) = connection.await {
                tracing::debug!(error = %error, "wasi:http connection ended with an error");
            }
        }));
    }
    // Draining: no more connections; open ones finish their requests in flight and close.
    drop(accepts);
    tracing::info!("draining wasi:http requests in flight");
    graceful.shutdown().await;
    // Instances may outlive their connection (a client gone mid-body): wait until every slot is back.
    let all = u32::try_from(max_concurrency).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
}
