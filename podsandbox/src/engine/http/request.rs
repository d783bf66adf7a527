//! One HTTP request: a fresh store and instance of the handler, `wasi:http/incoming-handler.handle`, and the
//! response it sets.
//!
//! The store gets the container's WASI context (argv, environment, directories, stdout/stderr into the
//! container's log) and its memory limit, per instance: a request that goes past the limit is cut off alone
//! (500), the others go on. Its CPU time counts as the container's.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use wasmtime::Store;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView, default_hooks};

use super::pool::Pool;
use super::server::Tasks;
use crate::engine::limits::MemoryLimiter;
use crate::engine::run::{RunSpec, arm_epoch};
use crate::engine::usage::CpuTimed;
use crate::engine::wasi;

/// Store state of one handler instance.
pub struct HandlerState {
    ctx: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
}

impl WasiView for HandlerState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HandlerState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: default_hooks(),
        }
    }
}

/// A handler container, ready to take requests.
pub struct Handler {
    pub(super) pool: Arc<Pool>,
    pub(super) pre: ProxyPre<HandlerState>,
    /// The container's run spec: each instance's WASI context is built from it.
    pub(super) spec: RunSpec,
}

impl Handler {
    /// Serves `req` with a new instance; holds `permit` (a concurrency slot) until the instance is gone, which
    /// can be after the response head was sent (the guest may still be writing the body).
    pub(super) async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        permit: OwnedSemaphorePermit,
        tasks: &Tasks,
    ) -> Result<Response<HyperOutgoingBody>, Infallible> {
        let what = format!("{} {}", req.method(), req.uri().path());
        let mut store = match self.store() {
            Ok(store) => store,
            Err(e) => return Ok(self.failed(&what, StatusCode::INTERNAL_SERVER_ERROR, &e)),
        };
        let (tx, rx) = oneshot::channel();
        let prepared = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)
            .and_then(|req| Ok((req, store.data_mut().http().new_response_outparam(tx)?)));
        let (req, out) = match prepared {
            Ok(p) => p,
            Err(e) => {
                return Ok(self.failed(&what, StatusCode::BAD_REQUEST, &e));
            }
        };
        let (done_tx, done_rx) = oneshot::channel();
        let this = Arc::clone(&self);
        let usage = Arc::clone(&self.spec.usage);
        let request = what.clone();
        let instance = async move {
            let _permit = permit;
            let result = match this.pre.instantiate_async(&mut store).await {
                Ok(proxy) => proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, req, out)
                    .await
                    .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e)),
                // The guest's own code never ran: the pool or the memory limit is full.
                Err(e) => Err((StatusCode::SERVICE_UNAVAILABLE, e)),
            };
            // Reported here, whether or not the response had been sent already (a trap mid-body).
            let status = result.map_err(|(status, e)| {
                this.report(&request, status, &e);
                status
            });
            let _ = done_tx.send(status);
        };
        // A task of the server's, so a hard stop ends it; its CPU time is the container's.
        tasks.spawn(Box::pin(CpuTimed::new(instance, usage)));

        Ok(match rx.await {
            Ok(Ok(response)) => response,
            // The guest answered with an error code instead of a response.
            Ok(Err(code)) => self.failed(
                &what,
                StatusCode::INTERNAL_SERVER_ERROR,
                &wasmtime::Error::msg(format!("the handler answered with error {code:?}")),
            ),
            // The outparam was dropped unset: the instance ended (trapped, or returned without answering).
            Err(_) => match done_rx.await {
                Ok(Err(status)) => plain(status, &format!("{status}\n")),
                Ok(Ok(())) => self.failed(
                    &what,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &wasmtime::Error::msg("the handler returned without setting a response"),
                ),
                Err(_) => unavailable(),
            },
        })
    }

    fn store(&self) -> Result<Store<HandlerState>, wasmtime::Error> {
        let ctx = wasi::builder(&self.spec, &[])?.build();
        let state = HandlerState {
            ctx,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            // The container's limit holds for each instance; the container's memory is the sum of its live
            // instances'.
            limiter: MemoryLimiter::sharing(self.spec.memory_limit, Arc::clone(&self.spec.usage)),
        };
        let mut store = Store::new(self.pool.engine(), state);
        store.limiter(|s: &mut HandlerState| &mut s.limiter);
        arm_epoch(&mut store);
        Ok(store)
    }

    /// Reports a failed request and answers `status`.
    fn failed(
        &self,
        what: &str,
        status: StatusCode,
        error: &wasmtime::Error,
    ) -> Response<HyperOutgoingBody> {
        self.report(what, status, error);
        plain(status, &format!("{status}\n"))
    }

    /// Reports a failed request in the container's log (where its own output goes) and the pod's log.
    fn report(&self, what: &str, status: StatusCode, error: &wasmtime::Error) {
        tracing::warn!(request = %what, status = status.as_u16(), error = format!("{error:#}"), "wasi:http request failed");
        self.spec
            .stderr
            .write(format!("wasm-cri: {what}: {status}: {error:#}\n").as_bytes());
    }
}

/// The answer when the server cannot take the request.
pub(super) fn unavailable() -> Response<HyperOutgoingBody> {
    plain(StatusCode::SERVICE_UNAVAILABLE, "the server is stopping\n")
}

/// A text response made by the server itself.
fn plain(status: StatusCode, text: &str) -> Response<HyperOutgoingBody> {
    let body = Full::new(Bytes::from(text.to_string()))
        .map_err(|never: Infallible| -> wasmtime_wasi_http::Error { match never {} })
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
}
