//! A pod sandbox record.
//!
//! ```text
//!   RunPodSandbox ──► Ready ──(StopPodSandbox | pod process died)──► NotReady ──RemovePodSandbox──► (gone)
//! ```
//! NotReady never goes back to Ready: the kubelet creates a new sandbox (attempt + 1) instead.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use proto::cri;
use serde::{Deserialize, Serialize};

use super::persist::{RECORD_VERSION, read_json, write_json};
use crate::error::ServerError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxState {
    Ready,
    NotReady,
}

/// Written once when the sandbox is created.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxMeta {
    pub version: u32,
    pub id: String,
    pub config: cri::PodSandboxConfig,
    pub created_at: i64,
    pub runtime_handler: String,
    /// Pinned network namespace; `None` for hostNetwork pods.
    pub netns: Option<PathBuf>,
    /// Volatile directory of the pod process (socket, its log, exit records, /etc files).
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    /// What the network backend attached (pod IPs, and for CNI the exact plugin list, parameters and result),
    /// so DEL after a restart or a config change undoes exactly that. `None`: loopback only.
    #[serde(default)]
    pub network: Option<cni::Attachment>,
}

/// The mutable part.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub version: u32,
    pub state: SandboxState,
    /// The pod process, identified by pid and start time (0 when none runs).
    pub pid: u32,
    pub start_time: u64,
    /// Why the sandbox is not ready, when it is not.
    #[serde(default)]
    pub reason: String,
    /// Set once the network backend detached the pod (at StopPodSandbox): no pod IP is reported from then on.
    #[serde(default)]
    pub network_detached: bool,
}

pub struct Sandbox {
    pub meta: SandboxMeta,
    dir: PathBuf,
    record: Mutex<SandboxRecord>,
    client: Mutex<Option<podsandbox::client::Client>>,
    /// Set while StopPodSandbox takes the pod process down, so its exit is not mistaken for a crash.
    stopping: AtomicBool,
}

impl Sandbox {
    /// Persists a new sandbox (meta first, then status) and returns it.
    pub fn create(
        dir: PathBuf,
        meta: SandboxMeta,
        record: SandboxRecord,
    ) -> Result<Sandbox, ServerError> {
        write_json(&dir.join("meta.json"), &meta)?;
        write_json(&dir.join("status.json"), &record)?;
        Ok(Sandbox {
            meta,
            dir,
            record: Mutex::new(record),
            client: Mutex::new(None),
            stopping: AtomicBool::new(false),
        })
    }

    pub fn load(dir: &Path) -> Result<Sandbox, ServerError> {
        let meta: SandboxMeta = read_json(&dir.join("meta.json"))?;
        let record: SandboxRecord = read_json(&dir.join("status.json"))?;
        Ok(Sandbox {
            meta,
            dir: dir.to_path_buf(),
            record: Mutex::new(record),
            client: Mutex::new(None),
            stopping: AtomicBool::new(false),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> MutexGuard<'_, SandboxRecord> {
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn record(&self) -> SandboxRecord {
        self.lock().clone()
    }

    pub fn state(&self) -> SandboxState {
        self.lock().state
    }

    /// Applies `change` on disk first, then in memory.
    pub fn update(&self, change: impl FnOnce(&mut SandboxRecord)) -> Result<(), ServerError> {
        let mut guard = self.lock();
        let mut next = guard.clone();
        change(&mut next);
        next.version = RECORD_VERSION;
        write_json(&self.dir.join("status.json"), &next)?;
        *guard = next;
        Ok(())
    }

    /// Marks the pod process as being shut down on purpose.
    pub fn begin_stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    pub fn client(&self) -> Option<podsandbox::client::Client> {
        self.client
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn set_client(&self, client: Option<podsandbox::client::Client>) {
        *self.client.lock().unwrap_or_else(|p| p.into_inner()) = client;
    }

    pub fn metadata(&self) -> cri::PodSandboxMetadata {
        self.meta.config.metadata.clone().unwrap_or_default()
    }

    /// The kubelet's name for this sandbox, unique per attempt: used to detect retried RunPodSandbox calls.
    pub fn name_key(&self) -> String {
        sandbox_name_key(&self.metadata())
    }
}

pub fn sandbox_name_key(m: &cri::PodSandboxMetadata) -> String {
    format!("{}_{}_{}_{}", m.name, m.namespace, m.uid, m.attempt)
}

impl SandboxState {
    pub fn to_cri(self) -> cri::PodSandboxState {
        match self {
            SandboxState::Ready => cri::PodSandboxState::SandboxReady,
            SandboxState::NotReady => cri::PodSandboxState::SandboxNotready,
        }
    }
}

impl SandboxRecord {
    pub fn ready(pid: u32, start_time: u64) -> SandboxRecord {
        SandboxRecord {
            version: RECORD_VERSION,
            state: SandboxState::Ready,
            pid,
            start_time,
            reason: String::new(),
            network_detached: false,
        }
    }
}

impl SandboxMeta {
    pub fn new(
        id: String,
        config: cri::PodSandboxConfig,
        created_at: i64,
        runtime_handler: String,
        netns: Option<PathBuf>,
        state_dir: PathBuf,
    ) -> SandboxMeta {
        let socket = state_dir.join("pod.sock");
        SandboxMeta {
            version: RECORD_VERSION,
            id,
            config,
            created_at,
            runtime_handler,
            netns,
            state_dir,
            socket,
            network: None,
        }
    }
}
