//! CRI `Status`: RuntimeReady and NetworkReady, with honest values.

use proto::cri::{
    RuntimeCondition, RuntimeHandler, RuntimeHandlerFeatures, RuntimeStatus, StatusRequest,
    StatusResponse,
};

use super::Runtime;

impl Runtime {
    pub fn status(&self, req: StatusRequest) -> StatusResponse {
        let runtime_ready = RuntimeCondition {
            r#type: "RuntimeReady".into(),
            status: true,
            reason: String::new(),
            message: String::new(),
        };
        // Pods get their own network namespace, which needs the privilege to create one, and their network
        // from the backend (CNI: ready once a config exists; else the native backend, unless disabled, when
        // pods still run, loopback only).
        let network_ready = if nix::unistd::geteuid().is_root() {
            let status = self.network.status();
            RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: status.ready,
                reason: status.reason,
                message: status.message,
            }
        } else {
            RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: false,
                reason: "NoNetworkNamespacePrivilege".into(),
                message: "wasm-cri is not running as root and cannot create pod network namespaces"
                    .into(),
            }
        };
        let mut info = std::collections::HashMap::new();
        if req.verbose {
            info.insert(
                "config".into(),
                serde_json::json!({
                    "root": self.config.root,
                    "state": self.config.state,
                    "socket": self.config.socket,
                    "insecureRegistries": self.config.insecure_registries,
                    "cniConfDir": self.config.cni.conf_dir,
                    "cniBinDirs": self.config.cni.bin_dirs,
                    "nativeNetwork": {
                        "enabled": self.config.native_network.enabled,
                        "bridge": self.config.native_network.bridge,
                        "subnet": self.config.native_network.subnet,
                        "mtu": self.config.native_network.mtu,
                        "masquerade": self.config.native_network.masquerade,
                        "hostports": self.config.native_network.hostports,
                        "ipamFile": self.config.native_network.ipam_file,
                    },
                })
                .to_string(),
            );
        }
        StatusResponse {
            status: Some(RuntimeStatus {
                conditions: vec![runtime_ready, network_ready],
            }),
            info,
            // Every handler name runs pods the same way, so each advertises the same features, and only
            // features it really has. The kubelet looks up its pod's RuntimeClass handler by name here.
            runtime_handlers: super::handlers::HANDLERS
                .iter()
                .map(|name| RuntimeHandler {
                    name: (*name).to_string(),
                    features: Some(RuntimeHandlerFeatures {
                        recursive_read_only_mounts: supports_recursive_read_only(),
                        user_namespaces: false,
                    }),
                })
                .collect(),
            // Merge and Strict are both applied (`identity.rs`) and ContainerStatus reports the user.
            features: Some(proto::cri::RuntimeFeatures {
                supplemental_groups_policy: true,
            }),
        }
    }
}

/// Recursive read-only mounts are made by pod processes with `mount_setattr(2)` (Linux 5.12+) in their own
/// mount namespace, which needs root.
fn supports_recursive_read_only() -> bool {
    if !nix::unistd::geteuid().is_root() {
        return false;
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (5, 12)
}
