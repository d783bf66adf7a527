//! The CRI methods, one file each, as plain async functions on [`Runtime`]: they take and return CRI messages
//! but know nothing of gRPC transport, so tests can call them directly.

mod cleanup;
mod container_create;
mod container_list;
mod container_remove;
mod container_reopen_log;
mod container_start;
mod container_status;
mod container_stop;
mod etc_files;
mod image_fs_info;
mod image_list;
mod image_pull;
mod image_remove;
mod image_status;
mod rootfs;
mod runtime_config;
mod sandbox_list;
mod sandbox_remove;
mod sandbox_run;
mod sandbox_status;
mod sandbox_stop;
mod status;
mod update_runtime_config;
mod version;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use imageservice::ImageStore;

use crate::config::Config;
use crate::state::Store;

pub use cleanup::Cleanup;

/// The daemon's state and collaborators, shared by every CRI call.
pub struct Runtime {
    pub config: Config,
    pub store: Store,
    pub images: Arc<ImageStore>,
    /// This binary, started again as `wasm-cri pod` for each pod.
    pub exe: PathBuf,
    /// Per-name locks so that a retried RunPodSandbox/CreateContainer waits for the first one instead of
    /// creating a twin.
    name_locks: DashMap<String, Arc<tokio::sync::Mutex<()>>>,
    /// What UpdateRuntimeConfig last told us (the node's pod CIDR).
    pod_cidr: Mutex<String>,
}

impl Runtime {
    pub fn new(config: Config, store: Store, images: Arc<ImageStore>, exe: PathBuf) -> Runtime {
        Runtime {
            config,
            store,
            images,
            exe,
            name_locks: DashMap::new(),
            pod_cidr: Mutex::new(String::new()),
        }
    }

    /// The lock for one kubelet-level name (sandbox name + attempt, or pod + container name + attempt).
    fn name_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        Arc::clone(
            self.name_locks
                .entry(key.to_string())
                .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(())))
                .value(),
        )
    }

    /// Drops a name lock that nobody holds any more, so the map does not grow with every pod ever made.
    fn release_name_lock(&self, key: &str) {
        self.name_locks
            .remove_if(key, |_, lock| Arc::strong_count(lock) == 1);
    }
}

/// Now as Unix nanoseconds (CRI timestamps).
pub fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

/// A verbose `info` map with one JSON document under the key "info", as crictl's `inspect` expects.
fn info_map(value: &serde_json::Value) -> HashMap<String, String> {
    HashMap::from([("info".to_string(), value.to_string())])
}
