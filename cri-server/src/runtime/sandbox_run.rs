//! CRI `RunPodSandbox`: state directory, network namespace and its network (CNI ADD), /etc files, and the pod
//! process.

use std::sync::Arc;

use proto::cri::{NamespaceMode, RunPodSandboxRequest, RunPodSandboxResponse};
use proto::pod::{Bootstrap, PROTOCOL_VERSION};
use tracing::info;

use super::{Cleanup, Runtime, etc_files, now_nanos, sysctls};
use crate::error::ServerError;
use crate::ids::new_id;
use crate::state::{Sandbox, SandboxMeta, SandboxRecord, SandboxState, sandbox::sandbox_name_key};
use crate::supervisor;

impl Runtime {
    pub async fn run_pod_sandbox(
        self: &Arc<Self>,
        req: RunPodSandboxRequest,
    ) -> Result<RunPodSandboxResponse, ServerError> {
        let config = req
            .config
            .ok_or_else(|| ServerError::InvalidArgument("RunPodSandbox needs a config".into()))?;
        let md = config.metadata.clone().ok_or_else(|| {
            ServerError::InvalidArgument(
                "config.metadata (name, namespace, uid) is required".into(),
            )
        })?;
        if md.name.is_empty() || md.namespace.is_empty() {
            return Err(ServerError::InvalidArgument(
                "config.metadata.name and config.metadata.namespace must not be empty".into(),
            ));
        }
        super::handlers::check(&req.runtime_handler)?;

        // A kubelet that timed out retries with the same name and attempt. Serialise on that name and hand
        // back the sandbox the first call made, instead of refusing the retry or making a twin.
        let key = sandbox_name_key(&md);
        self.with_name_lock(&key, async {
            let existing = self
                .store
                .sandboxes
                .iter()
                .find(|s| s.name_key() == key)
                .map(|s| Arc::clone(s.value()));
            match existing {
                Some(sb) if sb.state() == SandboxState::Ready => {
                    info!(pod_id = %sb.meta.id, name = %md.name, "RunPodSandbox retried; returning the existing sandbox");
                    Ok(RunPodSandboxResponse {
                        pod_sandbox_id: sb.meta.id.clone(),
                    })
                }
                Some(sb) => Err(ServerError::FailedPrecondition(format!(
                    "pod sandbox name {key} is taken by sandbox {} which is not ready; remove it or use a new attempt number",
                    sb.meta.id
                ))),
                None => self.create_sandbox(config, req.runtime_handler).await,
            }
        })
        .await
    }

    async fn create_sandbox(
        self: &Arc<Self>,
        config: proto::cri::PodSandboxConfig,
        runtime_handler: String,
    ) -> Result<RunPodSandboxResponse, ServerError> {
        let id = new_id();
        let mut cleanup = Cleanup::new();

        let state_dir = self.config.pod_state_dir(&id);
        std::fs::create_dir_all(&state_dir)
            .map_err(|e| ServerError::io("creating", &state_dir, e))?;
        {
            let d = state_dir.clone();
            cleanup.push("pod state dir", move || {
                let _ = std::fs::remove_dir_all(d);
            });
        }
        if !config.log_directory.is_empty() {
            std::fs::create_dir_all(&config.log_directory)
                .map_err(|e| ServerError::io("creating log directory", &config.log_directory, e))?;
        }

        let namespaces = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref());
        let host_network = namespaces.is_some_and(|n| n.network == NamespaceMode::Node as i32);
        let host_ipc = namespaces.is_some_and(|n| n.ipc == NamespaceMode::Node as i32);
        let host_pid = namespaces.is_some_and(|n| n.pid == NamespaceMode::Node as i32);
        let sysctls = match config.linux.as_ref() {
            Some(linux) => sysctls::validate(
                &linux.sysctls,
                sysctls::PodNamespaces {
                    ipc: !host_ipc,
                    network: !host_network,
                },
            )?,
            None => Default::default(),
        };
        let netns = if host_network {
            None
        } else {
            let ns = cni::NetNs::create(&self.config.netns_dir(), &id).map_err(|source| {
                ServerError::Net {
                    op: "creating the pod network namespace".into(),
                    source,
                }
            })?;
            let undo = ns.clone();
            cleanup.push("network namespace", move || {
                let _ = undo.remove();
            });
            Some(ns)
        };
        // The network is attached before the pod process starts, so its Wasm sees eth0 from the first
        // instruction (as a container sees its network when its process starts).
        let network = match &netns {
            Some(ns) => {
                self.attach_pod_network(&id, &config, ns.path(), &mut cleanup)
                    .await?
            }
            None => None,
        };

        etc_files::write_all(&state_dir.join("etc"), &config)?;

        let mut meta = SandboxMeta::new(
            id.clone(),
            config,
            now_nanos(),
            runtime_handler,
            netns.as_ref().map(|n| n.path().to_path_buf()),
            state_dir.clone(),
        );
        meta.network = network;
        let boot = Bootstrap {
            protocol_version: PROTOCOL_VERSION,
            pod_id: id.clone(),
            netns_path: meta
                .netns
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            socket_path: meta.socket.display().to_string(),
            state_dir: state_dir.display().to_string(),
            private_ipc: !host_ipc,
            sysctls: sysctls.into_iter().collect(),
        };
        // hostPID pods share the node's PID namespace; POD and CONTAINER get the pod's own (a Wasm container is
        // not a process, so it cannot have a namespace of its own: it shares the pod's, as with
        // shareProcessNamespace).
        let own_pid_namespace = !host_pid && nix::unistd::geteuid().is_root();
        let spawned = podsandbox::client::spawn(
            &self.exe,
            &boot,
            &state_dir.join("pod.log"),
            own_pid_namespace,
        )
        .await
        .map_err(|source| ServerError::Pod {
            op: "starting the pod process".into(),
            source,
        })?;
        {
            let pid = spawned.pid;
            cleanup.push("pod process", move || {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            });
        }

        let dir = self.store.sandboxes_dir().join(&id);
        {
            let d = dir.clone();
            cleanup.push("sandbox record", move || {
                let _ = std::fs::remove_dir_all(d);
            });
        }
        let sandbox = Sandbox::create(
            dir,
            meta,
            SandboxRecord::ready(spawned.pid, spawned.start_time),
        )?;
        sandbox.set_client(Some(spawned.client));
        let sandbox = Arc::new(sandbox);
        self.store
            .sandboxes
            .insert(id.clone(), Arc::clone(&sandbox));
        supervisor::watch(Arc::clone(self), sandbox, Some(spawned.child));
        cleanup.disarm();
        info!(pod_id = %id, pid = spawned.pid, host_network, "pod sandbox ready");
        Ok(RunPodSandboxResponse { pod_sandbox_id: id })
    }
}
