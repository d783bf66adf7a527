//! CRI `Version`: who we are and which CRI API we speak.

use proto::cri::{VersionRequest, VersionResponse};

use super::Runtime;

impl Runtime {
    pub fn version(&self, _req: VersionRequest) -> VersionResponse {
        VersionResponse {
            // The version of the kubelet runtime API (always "0.1.0" in every runtime: containerd, CRI-O).
            version: "0.1.0".into(),
            runtime_name: "wasm-cri".into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: "v1".into(),
        }
    }
}
