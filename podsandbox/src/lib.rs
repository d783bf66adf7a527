//! The pod side of wasm-cri.
//!
//! - [`pod`]: the pod process (`wasm-cri pod`): joins the pod's network namespace, owns one wasmtime
//!   [`engine::Engine`], runs every container of the pod as an instance, writes their CRI logs ([`logs`]) and
//!   serves the internal `pod.v1` protocol on a unix socket.
//! - [`client`]: what the daemon uses to spawn a pod process, talk to it, and find it again after a restart.
//! - [`engine`]: the one wasmtime configuration and the code that runs a module or component to its exit.
//! - [`guest_path`]: guest paths resolved inside a container's root without escaping it.

pub mod client;
pub mod engine;
pub mod fsutil;
pub mod guest_path;
pub mod logs;
pub mod pod;

/// "outer: cause: root cause": an error and its whole `#[source]` chain on one line, for gRPC messages and
/// logs.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        s.push_str(": ");
        s.push_str(&e.to_string());
        cur = e.source();
    }
    s
}
