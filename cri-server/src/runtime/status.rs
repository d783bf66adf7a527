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
                    recursive_read_only_mounts: false,
                    user_namespaces: false,
                }),
            }],
            features: None,
        }
    }
}
