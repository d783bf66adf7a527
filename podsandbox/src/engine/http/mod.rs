//! Serving a `wasi:http/incoming-handler` component: the pod process is the HTTP server, the component only
//! answers requests.
//!
//! - [`pool`]: the pooling-allocator engine the handler instances run in, derived from the one `Config`.
//! - [`server`]: listeners, HTTP/1.1 + HTTP/2 connections, bounded concurrency and the drain at stop.
//! - [`request`]: one request = one fresh instance from the pre-instantiated component.
//!
//! A container whose component exports `wasi:http/incoming-handler@0.2.x` (see
//! [`detect::exports_http_handler`](super::detect::exports_http_handler)) runs as a server rather than as a
//! `wasi:cli/run` command: it is Running while it serves, a stop drains it (no new connections, requests in
//! flight finish within the stop timeout) and it then exits 0, or 137 when the timeout cut requests off.

pub mod pool;
pub mod request;
pub mod server;

use tokio::sync::oneshot;

/// The port served when the container declares none (the `wasm-cri.io/listen` annotations, else the image's
/// `ExposedPorts`), as `wasmtime serve` does.
pub const DEFAULT_PORT: u16 = 8080;

/// Requests one handler container serves at once when its spec does not say.
pub const DEFAULT_MAX_CONCURRENCY: usize = 100;

/// How the pod serves one handler container (set by the pod for the container's own run, never for an exec).
#[derive(Debug)]
pub struct HttpServing {
    /// Requests handled at once; more wait for a slot (their connections stay open).
    pub max_concurrency: usize,
    /// Resolves (or is dropped) when the container is asked to stop: the server stops accepting and drains.
    /// The run's `stop` future is the hard end, which interrupts requests still in flight.
    pub drain: oneshot::Receiver<()>,
}

/// The ports a handler container serves: its listen ports, or [`DEFAULT_PORT`].
pub fn ports(listen_ports: &[u16]) -> Vec<u16> {
    if listen_ports.is_empty() {
        vec![DEFAULT_PORT]
    } else {
        listen_ports.to_vec()
    }
}
