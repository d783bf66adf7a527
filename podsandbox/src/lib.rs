//! The pod side of wasm-cri.
//!
//! - [`pod`]: the pod process (`wasm-cri pod`): joins the pod's network namespace, owns one wasmtime
//!   [`engine::Engine`], runs every container of the pod as an instance, writes their CRI logs ([`logs`]) and
//!   serves the internal `pod.v1` protocol on a unix socket.
//! - [`client`]: what the daemon uses to spawn a pod process, talk to it, and find it again after a restart.
//! - [`engine`]: the one wasmtime configuration and the code that runs a module or component to its exit.

pub mod client;
pub mod engine;
pub mod fsutil;
pub mod logs;
pub mod pod;
