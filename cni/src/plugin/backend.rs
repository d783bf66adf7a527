//! [`CniBackend`]: pod networks from CNI plugins, configured by the first file of a config directory.
//!
//! The directory is read again on every attach and every status query, so a config that appears, changes or
//! goes away takes effect without a restart (reading a few small files costs far less than the plugins do).
//! Detach never reads it: it runs the plugin list cached in the [`Attachment`], as libcni's result cache lets
//! containerd do.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};
use tracing::{info, warn};

use super::chain::{Invocation, Plugins};
use super::conf;
use super::result::CniResult;
use crate::backend::{
    Attachment, BoxFuture, CniAttachment, NetworkBackend, NetworkStatus, PodNetwork,
};
use crate::error::NetError;

/// The interface name pods get (`CNI_IFNAME`), as with every Kubernetes runtime.
pub const POD_IFNAME: &str = "eth0";

/// Where configs and plugins are, and how long a plugin may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniOptions {
    pub conf_dir: PathBuf,
    pub bin_dirs: Vec<PathBuf>,
    pub plugin_timeout: Duration,
}

impl Default for CniOptions {
    fn default() -> Self {
        CniOptions {
            conf_dir: PathBuf::from("/etc/cni/net.d"),
            // The upstream install location, then Debian's package.
            bin_dirs: vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")],
            plugin_timeout: Duration::from_secs(60),
        }
    }
}

/// Pod networks from CNI plugins.
#[derive(Debug, Clone)]
pub struct CniBackend {
    options: CniOptions,
    plugins: Plugins,
}

impl CniBackend {
    pub fn new(options: CniOptions) -> CniBackend {
        let plugins = Plugins {
            bin_dirs: options.bin_dirs.clone(),
            timeout: options.plugin_timeout,
        };
        CniBackend { options, plugins }
    }

    pub fn options(&self) -> &CniOptions {
        &self.options
    }

    async fn attach_pod(&self, pod: &PodNetwork) -> Result<Option<Attachment>, NetError> {
        let network = match conf::load_first(&self.options.conf_dir) {
            Ok(network) => network,
            Err(NetError::NoConfig { dir }) => {
                info!(pod_id = %pod.pod_id, conf_dir = %dir.display(), "no CNI config: the pod gets loopback only");
                return Ok(None);
            }
            Err(err) => return Err(err),
        };
        let inv = Invocation {
            container_id: pod.pod_id.clone(),
            netns: pod.netns.display().to_string(),
            ifname: POD_IFNAME.to_string(),
            args: k8s_args(pod),
            capability_args: capability_args(pod),
        };
        let raw = match self.plugins.add(&network, &inv).await {
            Ok(raw) => raw,
            Err(err) => {
                // Undo what the plugins before the failing one did (addresses, veths, port rules).
                if let Err(del_err) = self.plugins.del(&network, &inv, None).await {
                    warn!(pod_id = %pod.pod_id, error = %del_err, "CNI DEL after a failed ADD failed too");
                }
                return Err(err);
            }
        };
        let parsed = match CniResult::from_value(&raw) {
            Ok(parsed) => parsed,
            Err(source) => {
                let _ = self.plugins.del(&network, &inv, Some(&raw)).await;
                return Err(NetError::BadResult {
                    plugin: network
                        .plugin_type(network.plugins.len().saturating_sub(1))
                        .to_string(),
                    command: "ADD",
                    source,
                });
            }
        };
        let ips = parsed.pod_ips(POD_IFNAME);
        if ips.is_empty() {
            warn!(pod_id = %pod.pod_id, network = %network.name, "the CNI result has no address for the pod");
        }
        info!(pod_id = %pod.pod_id, network = %network.name, ips = ?ips, "pod attached to CNI network");
        Ok(Some(Attachment {
            backend: "cni".into(),
            ips,
            cni: Some(CniAttachment {
                network,
                container_id: inv.container_id,
                netns: pod.netns.clone(),
                ifname: inv.ifname,
                args: inv.args,
                capability_args: inv.capability_args,
                result: raw,
            }),
            native: None,
        }))
    }

    async fn detach_pod(&self, attachment: &Attachment) -> Result<(), NetError> {
        let Some(cached) = &attachment.cni else {
            return Err(NetError::ForeignAttachment {
                backend: attachment.backend.clone(),
            });
        };
        let inv = Invocation {
            container_id: cached.container_id.clone(),
            // CNI lets DEL run without a namespace (containerd does so once it is gone): plugins then release
            // what lives outside it (addresses, port rules).
            netns: if namespace_exists(&cached.netns) {
                cached.netns.display().to_string()
            } else {
                String::new()
            },
            ifname: cached.ifname.clone(),
            args: cached.args.clone(),
            capability_args: cached.capability_args.clone(),
        };
        self.plugins
            .del(&cached.network, &inv, Some(&cached.result))
            .await?;
        info!(pod_id = %cached.container_id, network = %cached.network.name, "pod detached from CNI network");
        Ok(())
    }
}

impl NetworkBackend for CniBackend {
    fn status(&self) -> NetworkStatus {
        match conf::load_first(&self.options.conf_dir) {
            Ok(_) => NetworkStatus::ready(),
            // containerd's wording, which operators and tools search for.
            Err(err) => NetworkStatus {
                ready: false,
                reason: "NetworkPluginNotReady".into(),
                message: format!(
                    "Network plugin returns error: cni plugin not initialized: {}",
                    crate::error::chain(&err)
                ),
            },
        }
    }

    fn attach<'a>(
        &'a self,
        pod: &'a PodNetwork,
    ) -> BoxFuture<'a, Result<Option<Attachment>, NetError>> {
        Box::pin(self.attach_pod(pod))
    }

    fn detach<'a>(&'a self, attachment: &'a Attachment) -> BoxFuture<'a, Result<(), NetError>> {
        Box::pin(self.detach_pod(attachment))
    }
}

/// A pinned namespace that is still mounted (a bare leftover file is not a namespace).
fn namespace_exists(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|fs| fs.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
}

/// `CNI_ARGS` for a Kubernetes pod, in containerd's order.
fn k8s_args(pod: &PodNetwork) -> Vec<(String, String)> {
    [
        ("IgnoreUnknown", "1"),
        ("K8S_POD_NAMESPACE", pod.namespace.as_str()),
        ("K8S_POD_NAME", pod.name.as_str()),
        ("K8S_POD_INFRA_CONTAINER_ID", pod.pod_id.as_str()),
        ("K8S_POD_UID", pod.uid.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The capability arguments offered to plugins; each plugin gets those it declares. `portMappings` is always
/// offered (possibly empty, as containerd does); the others only when the pod has them.
fn capability_args(pod: &PodNetwork) -> Map<String, Value> {
    let mut args = Map::new();
    args.insert(
        "portMappings".into(),
        serde_json::to_value(&pod.port_mappings).unwrap_or_default(),
    );
    if let Some(dns) = &pod.dns {
        args.insert("dns".into(), serde_json::to_value(dns).unwrap_or_default());
    }
    if let Some(bandwidth) = &pod.bandwidth {
        args.insert(
            "bandwidth".into(),
            serde_json::to_value(bandwidth).unwrap_or_default(),
        );
    }
    if !pod.ips.is_empty() {
        args.insert(
            "ips".into(),
            serde_json::to_value(&pod.ips).unwrap_or_default(),
        );
    }
    args
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use serde_json::json;

    use super::*;
    use crate::backend::{Bandwidth, PortMapping};

    fn pod() -> PodNetwork {
        PodNetwork {
            pod_id: "abc".into(),
            netns: PathBuf::from("/nonexistent/netns/abc"),
            name: "web".into(),
            namespace: "team".into(),
            uid: "u-1".into(),
            port_mappings: vec![PortMapping {
                host_port: 8080,
                container_port: 80,
                protocol: "tcp".into(),
                host_ip: String::new(),
            }],
            dns: None,
            bandwidth: Some(Bandwidth {
                ingress_rate: 1000,
                ingress_burst: 10,
                egress_rate: 0,
                egress_burst: 0,
            }),
            ips: Vec::new(),
            tap: false,
        }
    }

    #[test]
    fn env_args_and_capabilities_follow_containerd() {
        let p = pod();
        assert_eq!(
            super::super::chain::cni_args(&k8s_args(&p)),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=team;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u-1"
        );
        let caps = capability_args(&p);
        assert_eq!(
            caps["portMappings"],
            json!([{"hostPort":8080,"containerPort":80,"protocol":"tcp","hostIP":""}])
        );
        assert_eq!(caps["bandwidth"]["ingressRate"], 1000);
        assert!(!caps.contains_key("dns"));
        assert!(!caps.contains_key("ips"));
    }

    #[test]
    fn status_follows_the_config_directory_without_restart() {
        let dir = tempfile::tempdir().unwrap();
        let backend = CniBackend::new(CniOptions {
            conf_dir: dir.path().to_path_buf(),
            ..CniOptions::default()
        });
        let status = backend.status();
        assert!(!status.ready);
        assert_eq!(status.reason, "NetworkPluginNotReady");
        assert!(
            status.message.contains("no network config found"),
            "{}",
            status.message
        );
        std::fs::write(
            dir.path().join("10-x.conflist"),
            r#"{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"bridge"}]}"#,
        )
        .unwrap();
        assert!(backend.status().ready);
    }

    #[tokio::test]
    async fn attach_caches_what_detach_needs_even_after_the_config_changes() {
        let dir = tempfile::tempdir().unwrap();
        let (conf_dir, bin_dir) = (dir.path().join("conf"), dir.path().join("bin"));
        std::fs::create_dir_all(&conf_dir).unwrap();
        std::fs::create_dir_all(&bin_dir).unwrap();
        let log = dir.path().join("log");
        let plugin = bin_dir.join("fakenet");
        std::fs::write(
            &plugin,
            format!(
                "#!/bin/sh\ncat > /dev/null\necho \"$CNI_COMMAND netns=$CNI_NETNS\" >> {}\n[ \"$CNI_COMMAND\" = ADD ] && echo '{{\"cniVersion\":\"1.0.0\",\"interfaces\":[{{\"name\":\"eth0\",\"sandbox\":\"'$CNI_NETNS'\"}}],\"ips\":[{{\"interface\":0,\"address\":\"10.44.0.7/24\"}}]}}'\nexit 0\n",
                log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let backend = CniBackend::new(CniOptions {
            conf_dir: conf_dir.clone(),
            bin_dirs: vec![bin_dir],
            plugin_timeout: Duration::from_secs(10),
        });

        // No config: nothing to attach, and that is not an error.
        assert_eq!(backend.attach(&pod()).await.unwrap(), None);

        std::fs::write(
            conf_dir.join("10-fake.conflist"),
            r#"{"cniVersion":"1.0.0","name":"fake","plugins":[{"type":"fakenet"}]}"#,
        )
        .unwrap();
        let att = backend.attach(&pod()).await.unwrap().unwrap();
        assert_eq!(att.pod_ip(), Some("10.44.0.7".parse().unwrap()));
        assert!(att.additional_ips().is_empty());

        // The config goes away; DEL still runs the cached list, and the round trip through JSON (how the
        // runtime keeps it) changes nothing. The namespace does not exist, so CNI_NETNS is empty.
        std::fs::remove_file(conf_dir.join("10-fake.conflist")).unwrap();
        let stored: Attachment =
            serde_json::from_str(&serde_json::to_string(&att).unwrap()).unwrap();
        assert_eq!(stored, att);
        backend.detach(&stored).await.unwrap();
        backend.detach(&stored).await.unwrap();
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "ADD netns=/nonexistent/netns/abc\nDEL netns=\nDEL netns=\n"
        );
    }
}
