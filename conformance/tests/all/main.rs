//! End-to-end tests for wasm-cri: one integration-test binary, one module per area.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod client;
mod cri;
mod deploy;
mod exec;
mod fixtures;
mod formats;
mod identity;
mod network;
mod registry;
mod restart;
mod run;
mod sockets;
mod streaming;
mod toolbox;
