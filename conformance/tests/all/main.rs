//! End-to-end tests for wasm-cri: one integration-test binary, one module per area.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod airgap;
mod client;
mod cri;
mod deploy;
mod exec;
mod fixtures;
mod formats;
mod identity;
mod image_store;
mod native_network;
mod network;
mod precompile;
mod registry;
mod restart;
mod run;
mod sockets;
mod streaming;
mod toolbox;
mod wasi_http;
