//! End-to-end tests for wasm-cri: one integration-test binary, one module per area.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod client;
mod cri;
mod exec;
mod fixtures;
mod formats;
mod registry;
mod restart;
mod run;
mod streaming;
mod toolbox;
