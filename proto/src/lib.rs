//! The wire types wasm-cri speaks.
//!
//! - [`cri`]: Kubernetes CRI v1 messages and services, re-exported from the `k8s-cri` crate (API level
//!   Kubernetes 1.32). Never copied into this repository.
//! - [`pod`]: wasm-cri's internal protocol between the daemon and each pod process (`pod/v1/pod.proto`).

/// Kubernetes CRI v1 (`runtime.v1`).
pub mod cri {
    pub use k8s_cri::v1::*;
}

/// wasm-cri's daemon↔pod-process protocol, `wasmcri.pod.v1`.
pub mod pod {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("wasmcri.pod.v1");

    /// Version of the pod protocol carried in [`Bootstrap`], [`BootstrapReply`] and [`HelloReply`]. A daemon
    /// refuses to adopt a pod process that speaks another version.
    pub const PROTOCOL_VERSION: u32 = 1;
}
