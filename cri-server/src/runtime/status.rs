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
        // Pods get their own (loopback-only) network namespace; that needs the privilege to create one.
        let can_netns = nix::unistd::geteuid().is_root();
        let network_ready = RuntimeCondition {
            r#type: "NetworkReady".into(),
            status: can_netns,
            reason: if can_netns {
                String::new()
            } else {
                "NoNetworkNamespacePrivilege".into()
            },
            message: if can_netns {
                String::new()
            } else {
                "wasm-cri is not running as root and cannot create pod network namespaces".into()
            },
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
                })
                .to_string(),
            );
        }
        StatusResponse {
            status: Some(RuntimeStatus {
                conditions: vec![runtime_ready, network_ready],
            }),
            info,
            // One handler (the default, ""), advertising only features it really has.
            runtime_handlers: vec![RuntimeHandler {
                name: String::new(),
                features: Some(RuntimeHandlerFeatures {
                    recursive_read_only_mounts: supports_recursive_read_only(),
                    user_namespaces: false,
                }),
            }],
            features: None,
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
