//! The CRI methods, one file each, as plain async functions on [`Runtime`]: they take and return CRI messages
//! but know nothing of gRPC transport, so tests can call them directly.

mod attach;
mod capabilities;
mod cleanup;
mod container_create;
mod container_list;
mod container_remove;
mod container_reopen_log;
mod container_start;
mod container_stats;
mod container_stats_list;
mod container_status;
mod container_stop;
mod etc_files;
mod exec;
mod exec_in_pod;
mod exec_sync;
mod handlers;
mod http_concurrency;
mod identity;
mod image_fs_info;
mod image_list;
mod image_pull;
mod image_remove;
mod image_status;
mod listen_ports;
mod pod_network;
mod port_forward;
mod precompiled;
mod rootfs;
mod runtime_config;
mod sandbox_list;
mod sandbox_remove;
mod sandbox_run;
mod sandbox_stats;
mod sandbox_stats_list;
mod sandbox_status;
mod sandbox_stop;
mod status;
mod stream_backend;
mod sysctls;
mod update_runtime_config;
mod version;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use imageservice::ImageStore;

use crate::config::Config;
use crate::state::Store;
use crate::streaming::TokenCache;

pub use cleanup::Cleanup;
pub use exec_in_pod::{ExecCommand, ExecIo};
pub use stream_backend::RuntimeBackend;

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
    /// Exec/Attach/PortForward requests waiting for their client at the streaming server.
    pub stream_tokens: Arc<TokenCache>,
    /// Gives pods their network (CNI plugins in the daemon; chosen by the caller of [`Runtime::new`]).
    pub network: Arc<dyn cni::NetworkBackend>,
}

impl Runtime {
    pub fn new(
        config: Config,
        store: Store,
        images: Arc<ImageStore>,
        exe: PathBuf,
        network: Arc<dyn cni::NetworkBackend>,
    ) -> Runtime {
        Runtime {
            config,
            store,
            images,
            exe,
            name_locks: DashMap::new(),
            pod_cidr: Mutex::new(String::new()),
            stream_tokens: Arc::new(TokenCache::new()),
            network,
        }
    }

    /// Runs `work` while holding the lock of one kubelet-level name (sandbox name + attempt, or pod +
    /// container name + attempt), then forgets the lock if nobody else waits for it, so the map does not grow
    /// with every pod ever made.
    async fn with_name_lock<T>(&self, key: &str, work: impl Future<Output = T>) -> T {
        let lock = Arc::clone(
            self.name_locks
                .entry(key.to_string())
                .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(())))
                .value(),
        );
        let result = {
            let _held = lock.lock().await;
            work.await
        };
        drop(lock);
        self.name_locks
            .remove_if(key, |_, lock| Arc::strong_count(lock) == 1);
        result
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn runtime(dir: &std::path::Path) -> Runtime {
        let images =
            ImageStore::open(&dir.join("images"), imageservice::StoreOptions::default()).unwrap();
        Runtime::new(
            Config::default(),
            Store::load(dir).unwrap(),
            Arc::new(images),
            PathBuf::from("/nonexistent"),
            Arc::new(cni::NoNetwork),
        )
    }

    #[tokio::test]
    async fn name_locks_serialise_and_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let rt = Arc::new(runtime(dir.path()));
        let order = Arc::new(Mutex::new(Vec::new()));
        let (a, b) = (Arc::clone(&rt), Arc::clone(&rt));
        let (oa, ob) = (Arc::clone(&order), Arc::clone(&order));
        let first = tokio::spawn(async move {
            a.with_name_lock("pod_ns_uid_0", async {
                oa.lock().unwrap().push("first in");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                oa.lock().unwrap().push("first out");
            })
            .await
        });
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        let second = tokio::spawn(async move {
            b.with_name_lock("pod_ns_uid_0", async {
                ob.lock().unwrap().push("second in");
            })
            .await
        });
        first.await.unwrap();
        second.await.unwrap();
        assert_eq!(
            *order.lock().unwrap(),
            vec!["first in", "first out", "second in"]
        );
        assert!(rt.name_locks.is_empty());
    }
}
