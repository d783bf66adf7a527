//! The pod's network through the configured [`cni::NetworkBackend`]: what RunPodSandbox, StopPodSandbox,
//! RemovePodSandbox and PodSandboxStatus need, with the translation from CRI's pod config to the backend's
//! [`cni::PodNetwork`] (port mappings with a host port, DNS, bandwidth annotations), as containerd does it.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use proto::cri::{PodSandboxConfig, Protocol};
use tracing::warn;

use super::{Cleanup, Runtime};
use crate::error::{ServerError, chain};
use crate::state::{Sandbox, SandboxState};

/// Pod annotations that ask for traffic shaping (the kubelet's bandwidth annotations).
const INGRESS_BANDWIDTH: &str = "kubernetes.io/ingress-bandwidth";
const EGRESS_BANDWIDTH: &str = "kubernetes.io/egress-bandwidth";
/// Pod annotation choosing how the native backend wires the pod: `tap` gives it a TAP device (`tap0`) that
/// carries its frames instead of an addressed `eth0`; `routed` (or no annotation) is the usual.
pub const NETWORK_MODE: &str = "wasm-cri.io/network-mode";

impl Runtime {
    /// Attaches a new pod whose namespace is `netns` and registers the undo step in `cleanup`. `None`: the
    /// backend had nothing to attach (no CNI config), the pod keeps loopback only.
    pub(super) async fn attach_pod_network(
        &self,
        pod_id: &str,
        config: &PodSandboxConfig,
        netns: &Path,
        cleanup: &mut Cleanup,
    ) -> Result<Option<cni::Attachment>, ServerError> {
        let pod = pod_network(pod_id, config, netns)?;
        let attachment = self
            .network
            .attach(&pod)
            .await
            .map_err(|source| ServerError::Net {
                op: format!("setting up the network of pod sandbox {pod_id}"),
                source,
            })?;
        if let Some(att) = &attachment {
            let (backend, att) = (Arc::clone(&self.network), att.clone());
            let pod_id = pod_id.to_string();
            cleanup.push("pod network", move || {
                // Undo steps are synchronous and the namespace is removed right after this one, so DEL must
                // finish first: it runs on a thread of its own (this only happens on the failure path).
                let joined = std::thread::Builder::new()
                    .name("cni-rollback".into())
                    .spawn(move || {
                        let rt = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()?;
                        rt.block_on(backend.detach(&att))
                            .map_err(|e| std::io::Error::other(chain(&e)))
                    })
                    .map(|handle| handle.join());
                match joined {
                    Ok(Ok(Ok(()))) => {}
                    Ok(Ok(Err(err))) => {
                        warn!(pod_id = %pod_id, error = %err, "rolling back the pod network failed")
                    }
                    Ok(Err(_)) | Err(_) => {
                        warn!(pod_id = %pod_id, "rolling back the pod network: worker thread failed")
                    }
                }
            });
        }
        Ok(attachment)
    }

    /// Detaches the sandbox's network (CNI DEL) unless that was done already; `again` asks the backend even
    /// then (RemovePodSandbox: DEL is idempotent, and a second one catches what a failed first one left).
    pub(super) async fn detach_pod_network(
        &self,
        sandbox: &Sandbox,
        again: bool,
    ) -> Result<(), ServerError> {
        let Some(att) = &sandbox.meta.network else {
            return Ok(());
        };
        if sandbox.record().network_detached && !again {
            return Ok(());
        }
        self.network
            .detach(att)
            .await
            .map_err(|source| ServerError::Net {
                op: format!(
                    "tearing down the network of pod sandbox {}",
                    sandbox.meta.id
                ),
                source,
            })?;
        if !sandbox.record().network_detached {
            sandbox.update(|r| r.network_detached = true)?;
        }
        Ok(())
    }
}

/// The pod IP and additional IPs to report: none for a sandbox that is not ready or whose network was torn
/// down (as containerd reports none once the namespace is closed).
pub(super) fn reported_ips(sandbox: &Sandbox) -> (Option<IpAddr>, Vec<IpAddr>) {
    let rec = sandbox.record();
    match &sandbox.meta.network {
        Some(att) if rec.state == SandboxState::Ready && !rec.network_detached => {
            (att.pod_ip(), att.additional_ips().to_vec())
        }
        _ => (None, Vec::new()),
    }
}

/// CRI pod config → what the network backend needs.
fn pod_network(
    pod_id: &str,
    config: &PodSandboxConfig,
    netns: &Path,
) -> Result<cni::PodNetwork, ServerError> {
    let md = config.metadata.clone().unwrap_or_default();
    let port_mappings = config
        .port_mappings
        .iter()
        // Only mappings with a host port mean anything to the network; the others just document the port.
        .filter(|m| m.host_port > 0)
        .map(|m| cni::PortMapping {
            host_port: m.host_port,
            container_port: m.container_port,
            protocol: match Protocol::try_from(m.protocol) {
                Ok(Protocol::Udp) => "udp",
                Ok(Protocol::Sctp) => "sctp",
                _ => "tcp",
            }
            .into(),
            host_ip: m.host_ip.clone(),
        })
        .collect();
    let dns = config.dns_config.as_ref().map(|d| cni::DnsSettings {
        servers: d.servers.clone(),
        searches: d.searches.clone(),
        options: d.options.clone(),
    });
    Ok(cni::PodNetwork {
        pod_id: pod_id.to_string(),
        netns: netns.to_path_buf(),
        name: md.name,
        namespace: md.namespace,
        uid: md.uid,
        port_mappings,
        dns,
        bandwidth: bandwidth(config)?,
        // CRI has no field for requested addresses.
        ips: Vec::new(),
        tap: tap_mode(config)?,
    })
}

/// The [`NETWORK_MODE`] annotation.
fn tap_mode(config: &PodSandboxConfig) -> Result<bool, ServerError> {
    match config.annotations.get(NETWORK_MODE).map(String::as_str) {
        None | Some("routed") => Ok(false),
        Some("tap") => Ok(true),
        Some(other) => Err(ServerError::InvalidArgument(format!(
            "annotation {NETWORK_MODE}={other:?} is not a network mode: use \"routed\" (the default) or \"tap\""
        ))),
    }
}

/// The bandwidth annotations as the `bandwidth` capability: rates in bits per second, bursts unlimited
/// (containerd uses math.MaxUint32).
fn bandwidth(config: &PodSandboxConfig) -> Result<Option<cni::Bandwidth>, ServerError> {
    let rate = |key: &str| -> Result<Option<u64>, ServerError> {
        config
            .annotations
            .get(key)
            .map(|v| {
                parse_quantity(v).ok_or_else(|| {
                    ServerError::InvalidArgument(format!(
                        "annotation {key}={v:?} is not a quantity such as 10M"
                    ))
                })
            })
            .transpose()
    };
    let (ingress, egress) = (rate(INGRESS_BANDWIDTH)?, rate(EGRESS_BANDWIDTH)?);
    if ingress.is_none() && egress.is_none() {
        return Ok(None);
    }
    let burst = |r: Option<u64>| r.map_or(0, |_| u64::from(u32::MAX));
    Ok(Some(cni::Bandwidth {
        ingress_rate: ingress.unwrap_or(0),
        ingress_burst: burst(ingress),
        egress_rate: egress.unwrap_or(0),
        egress_burst: burst(egress),
    }))
}

/// A Kubernetes quantity (`1000`, `10k`, `10M`, `1Gi`, `1.5M`) as a whole number.
fn parse_quantity(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let factor: f64 = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => return None,
    };
    let value: f64 = number.parse().ok()?;
    let total = (value * factor).round();
    (total.is_finite() && total >= 0.0 && total < u64::MAX as f64).then_some(total as u64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use proto::cri::{DnsConfig, PodSandboxMetadata, PortMapping};

    use super::*;

    #[test]
    fn pod_config_becomes_the_backend_request() {
        let config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: "web".into(),
                uid: "u1".into(),
                namespace: "ns".into(),
                attempt: 0,
            }),
            port_mappings: vec![
                PortMapping {
                    protocol: Protocol::Tcp as i32,
                    container_port: 80,
                    host_port: 0,
                    host_ip: String::new(),
                },
                PortMapping {
                    protocol: Protocol::Udp as i32,
                    container_port: 53,
                    host_port: 5353,
                    host_ip: "127.0.0.1".into(),
                },
            ],
            dns_config: Some(DnsConfig {
                servers: vec!["10.0.0.10".into()],
                searches: vec!["svc".into()],
                options: vec!["ndots:5".into()],
            }),
            annotations: [(INGRESS_BANDWIDTH.to_string(), "10M".to_string())].into(),
            ..Default::default()
        };
        let pod = pod_network("id1", &config, Path::new("/run/x/netns/id1")).unwrap();
        assert_eq!(
            (pod.name.as_str(), pod.namespace.as_str(), pod.uid.as_str()),
            ("web", "ns", "u1")
        );
        assert_eq!(
            pod.port_mappings,
            vec![cni::PortMapping {
                host_port: 5353,
                container_port: 53,
                protocol: "udp".into(),
                host_ip: "127.0.0.1".into()
            }]
        );
        assert_eq!(pod.dns.unwrap().options, vec!["ndots:5"]);
        let bw = pod.bandwidth.unwrap();
        assert_eq!((bw.ingress_rate, bw.egress_rate), (10_000_000, 0));
        assert_eq!(bw.ingress_burst, u64::from(u32::MAX));
    }

    fn runtime_with(dir: &Path, network: Arc<cni::fake::FakeBackend>) -> Runtime {
        let images = imageservice::ImageStore::open(
            &dir.join("images"),
            imageservice::StoreOptions::default(),
        )
        .unwrap();
        Runtime::new(
            crate::config::Config::default(),
            crate::state::Store::load(dir).unwrap(),
            Arc::new(images),
            std::path::PathBuf::from("/nonexistent"),
            network,
        )
    }

    #[tokio::test]
    async fn a_failed_run_pod_sandbox_detaches_what_it_attached() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(cni::fake::FakeBackend::new());
        let rt = runtime_with(dir.path(), Arc::clone(&fake));
        let mut cleanup = Cleanup::new();
        let att = rt
            .attach_pod_network(
                "p1",
                &PodSandboxConfig::default(),
                Path::new("/x"),
                &mut cleanup,
            )
            .await
            .unwrap()
            .unwrap();
        // A later step fails: the rollback runs (and finishes) when the undo steps are dropped.
        drop(cleanup);
        use cni::fake::Call;
        assert_eq!(
            fake.calls(),
            vec![
                Call::Attach("p1".into()),
                Call::Detach(att.pod_ip().unwrap().to_string())
            ]
        );
        // A backend that fails leaves nothing to undo and names the pod.
        *fake.fail_attach.lock().unwrap() = Some("no addresses left".into());
        let mut cleanup = Cleanup::new();
        let err = rt
            .attach_pod_network(
                "p2",
                &PodSandboxConfig::default(),
                Path::new("/x"),
                &mut cleanup,
            )
            .await
            .unwrap_err();
        assert!(crate::error::chain(&err).contains("p2"), "{err}");
        assert!(
            crate::error::chain(&err).contains("no addresses left"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn ips_are_reported_until_the_network_is_detached() {
        let dir = tempfile::tempdir().unwrap();
        let fake = Arc::new(cni::fake::FakeBackend::new());
        let rt = runtime_with(dir.path(), Arc::clone(&fake));
        let mut meta = crate::state::SandboxMeta::new(
            "p1".into(),
            PodSandboxConfig::default(),
            0,
            String::new(),
            None,
            dir.path().join("state"),
        );
        let mut cleanup = Cleanup::new();
        meta.network = rt
            .attach_pod_network(
                "p1",
                &PodSandboxConfig::default(),
                Path::new("/x"),
                &mut cleanup,
            )
            .await
            .unwrap();
        cleanup.disarm();
        let sandbox = Sandbox::create(
            dir.path().join("sb"),
            meta,
            crate::state::SandboxRecord::ready(1, 1),
        )
        .unwrap();
        let (ip, additional) = reported_ips(&sandbox);
        assert!(ip.unwrap().is_ipv4());
        assert_eq!(additional.len(), 1);

        // Stop detaches once; remove asks again.
        rt.detach_pod_network(&sandbox, false).await.unwrap();
        rt.detach_pod_network(&sandbox, false).await.unwrap();
        assert_eq!(reported_ips(&sandbox), (None, Vec::new()));
        rt.detach_pod_network(&sandbox, true).await.unwrap();
        let detaches = fake
            .calls()
            .iter()
            .filter(|c| matches!(c, cni::fake::Call::Detach(_)))
            .count();
        assert_eq!(detaches, 2);
        // The flag is on disk: a restarted daemon does not report the address either.
        let reloaded = Sandbox::load(&dir.path().join("sb")).unwrap();
        assert!(reloaded.record().network_detached);
        assert_eq!(reloaded.meta.network, sandbox.meta.network);
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("1000"), Some(1000));
        assert_eq!(parse_quantity("1.5M"), Some(1_500_000));
        assert_eq!(parse_quantity("2Ki"), Some(2048));
        assert_eq!(parse_quantity("10Q"), None);
        assert_eq!(parse_quantity("fast"), None);
        let bad = PodSandboxConfig {
            annotations: [(EGRESS_BANDWIDTH.to_string(), "lots".to_string())].into(),
            ..Default::default()
        };
        assert!(matches!(
            bandwidth(&bad),
            Err(ServerError::InvalidArgument(_))
        ));
    }

    #[test]
    fn network_mode_annotation() {
        let with = |v: &str| PodSandboxConfig {
            annotations: [(NETWORK_MODE.to_string(), v.to_string())].into(),
            ..Default::default()
        };
        assert!(!tap_mode(&PodSandboxConfig::default()).unwrap());
        assert!(!tap_mode(&with("routed")).unwrap());
        assert!(tap_mode(&with("tap")).unwrap());
        assert!(matches!(
            tap_mode(&with("tun")),
            Err(ServerError::InvalidArgument(_))
        ));
    }
}
