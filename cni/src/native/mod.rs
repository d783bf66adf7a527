//! The native backend: pod networks made in-process over rtnetlink, with no CNI config and no plugin
//! binaries, so wasm-cri works on a bare node.
//!
//! - [`subnet`]: the configured IPv4 subnet; its first address is the bridge's, the pods' gateway.
//! - [`ipam`]: pod addresses, persisted atomically in one file under the daemon's root.
//! - `links`: the netlink requests (bridge, veth, addresses, routes, tc redirect).
//! - `pod_side`: the work inside the pod's namespace, on a thread of its own (routed or TAP mode).
//! - `iptables`: hostPort DNAT and optional masquerading.
//! - [`fallback`]: the backend the daemon uses: CNI while a CNI config exists, else this one.
//!
//! Per pod: the bridge is ensured (created with the gateway address and up if missing), an address is
//! allocated, a veth pair is made with its host end on the bridge and its other end created inside the pod's
//! namespace as `eth0`, which gets the address and a default route via the gateway (or, in TAP mode, is wired
//! to `tap0` instead), and hostPort rules are added. Everything needed to undo that is kept in the
//! [`Attachment`], so detach works after a daemon restart or a config change, and twice.

pub mod error;
pub mod fallback;
pub mod ipam;
mod iptables;
mod links;
mod pod_side;
pub mod subnet;

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;
use tracing::{info, warn};

use crate::backend::{
    Attachment, BoxFuture, NetworkBackend, NetworkStatus, PodNetwork, PortMapping,
};
use crate::error::NetError;
pub use error::NativeError;
use ipam::Ipam;
use links::Netlink;
pub use pod_side::{POD_IFNAME, TAP_IFNAME};
pub use subnet::Subnet;

/// The `backend` name in attachments made here.
pub const BACKEND_NAME: &str = "native";

/// The native backend's settings (`[native_network]` in the daemon's config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeOptions {
    /// Whether pods get a network from this backend when no CNI config exists. Detaching pods it attached
    /// earlier works either way.
    pub enabled: bool,
    /// The node-side bridge (at most 15 bytes).
    pub bridge: String,
    pub subnet: Subnet,
    /// MTU of the bridge, the veths and TAP devices.
    pub mtu: u32,
    /// Masquerade pod traffic leaving the node (and turn on IPv4 forwarding).
    pub masquerade: bool,
    /// Program hostPort mappings (iptables DNAT).
    pub hostports: bool,
    /// The IPAM file (`<root>/network/ipam.json`).
    pub ipam_file: PathBuf,
}

impl Default for NativeOptions {
    fn default() -> Self {
        NativeOptions {
            enabled: true,
            bridge: "wcri0".into(),
            subnet: Subnet::DEFAULT,
            mtu: 1500,
            masquerade: false,
            hostports: true,
            ipam_file: PathBuf::from("/var/lib/wasm-cri/network/ipam.json"),
        }
    }
}

/// What attaching a pod did, kept in the pod's `meta.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NativeAttachment {
    pub pod_id: String,
    pub netns: PathBuf,
    pub bridge: String,
    /// The node-side end of the pod's veth.
    pub host_veth: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    /// `eth0`'s hardware address (a TAP-mode sandbox uses it as its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// TAP mode: `tap0` carries the pod's frames, `eth0` has no address.
    #[serde(default)]
    pub tap: bool,
    /// The hostPort mappings programmed for the pod.
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
}

/// Pod networks made over rtnetlink.
#[derive(Debug)]
pub struct NativeBackend {
    options: NativeOptions,
    ipam: Arc<Ipam>,
    hostport_base: OnceCell<()>,
    masquerade: OnceCell<()>,
}

impl NativeBackend {
    pub fn new(options: NativeOptions) -> NativeBackend {
        let ipam = Arc::new(Ipam::new(options.ipam_file.clone(), options.subnet));
        NativeBackend {
            options,
            ipam,
            hostport_base: OnceCell::new(),
            masquerade: OnceCell::new(),
        }
    }

    pub fn options(&self) -> &NativeOptions {
        &self.options
    }

    /// The node-side veth name of a pod: `wcv` and the first 12 characters of its id (interface names hold
    /// 15 bytes; sandbox ids are 64 random hex digits).
    pub fn host_veth_name(pod_id: &str) -> String {
        let tail: String = pod_id
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(12)
            .collect();
        format!("wcv{tail}")
    }

    async fn attach_pod(&self, pod: &PodNetwork) -> Result<Attachment, NativeError> {
        let ipam = Arc::clone(&self.ipam);
        let pod_id = pod.pod_id.clone();
        let ip = tokio::task::spawn_blocking(move || ipam.allocate(&pod_id))
            .await
            .map_err(NativeError::IpamTask)??;
        let mut native = NativeAttachment {
            pod_id: pod.pod_id.clone(),
            netns: pod.netns.clone(),
            bridge: self.options.bridge.clone(),
            host_veth: Self::host_veth_name(&pod.pod_id),
            ip,
            prefix: self.options.subnet.prefix(),
            gateway: self.options.subnet.gateway(),
            mac: None,
            tap: pod.tap,
            port_mappings: if self.options.hostports {
                pod.port_mappings
                    .iter()
                    .filter(|m| iptables::is_ipv4(m))
                    .cloned()
                    .collect()
            } else {
                Vec::new()
            },
        };
        if let Err(err) = self.wire(&mut native).await {
            // Undo whatever part was done: the same steps as a detach, each tolerant of missing pieces.
            if let Err(undo) = self.detach_native(&native).await {
                warn!(pod_id = %pod.pod_id, error = %crate::error::chain(&undo), "undoing a failed native attach failed too");
            }
            return Err(err);
        }
        info!(
            pod_id = %pod.pod_id,
            ip = %native.ip,
            bridge = %native.bridge,
            host_veth = %native.host_veth,
            tap = native.tap,
            "pod attached to the native network"
        );
        Ok(Attachment {
            backend: BACKEND_NAME.into(),
            ips: vec![IpAddr::V4(native.ip)],
            cni: None,
            native: Some(native),
        })
    }

    /// Bridge, veth, the pod's side, rules.
    async fn wire(&self, native: &mut NativeAttachment) -> Result<(), NativeError> {
        let opts = &self.options;
        {
            let nl = Netlink::connect()?;
            let bridge = nl
                .ensure_bridge(
                    &opts.bridge,
                    opts.subnet.gateway(),
                    opts.subnet.prefix(),
                    opts.mtu,
                )
                .await?;
            let netns = pod_side::open_netns(&native.netns)?;
            nl.add_veth(
                &native.host_veth,
                POD_IFNAME,
                bridge,
                opts.mtu,
                netns.as_raw_fd(),
            )
            .await?;
        }
        let side = pod_side::PodSide {
            netns: native.netns.clone(),
            ip: native.ip,
            prefix: native.prefix,
            gateway: native.gateway,
            mtu: opts.mtu,
            tap: native.tap,
        };
        native.mac = tokio::task::spawn_blocking(move || pod_side::configure(side))
            .await
            .map_err(NativeError::IpamTask)??;
        if opts.masquerade {
            self.masquerade
                .get_or_try_init(|| iptables::ensure_masquerade(&opts.bridge, opts.subnet))
                .await?;
        }
        if !native.port_mappings.is_empty() {
            self.hostport_base
                .get_or_try_init(|| iptables::ensure_hostport_base(&opts.bridge))
                .await?;
            for m in &native.port_mappings {
                iptables::add_hostport(&native.pod_id, native.ip, m).await?;
            }
        }
        Ok(())
    }

    /// Deletes the veth (its peer goes with it), the hostPort rules and the address. Each step tolerates what
    /// is already gone; all are tried, and the first failure is returned.
    async fn detach_native(&self, native: &NativeAttachment) -> Result<(), NativeError> {
        let mut first_err = None;
        match Netlink::connect() {
            Ok(nl) => {
                if let Err(err) = nl.delete(&native.host_veth).await {
                    first_err.get_or_insert(err);
                }
            }
            Err(err) => {
                first_err.get_or_insert(err);
            }
        }
        for m in &native.port_mappings {
            if let Err(err) = iptables::remove_hostport(&native.pod_id, native.ip, m).await {
                first_err.get_or_insert(err);
            }
        }
        // The address is released from the file the attachment was made with's subnet too: release only
        // looks the address up, so a subnet change in between does not matter.
        let ipam = Arc::clone(&self.ipam);
        let (ip, pod_id) = (native.ip, native.pod_id.clone());
        match tokio::task::spawn_blocking(move || ipam.release(ip, &pod_id)).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                first_err.get_or_insert(err);
            }
            Err(join) => {
                first_err.get_or_insert(NativeError::IpamTask(join));
            }
        }
        match first_err {
            Some(err) => Err(err),
            None => {
                info!(pod_id = %native.pod_id, ip = %native.ip, "pod detached from the native network");
                Ok(())
            }
        }
    }

    /// Every address allocation (address, pod id).
    pub fn allocations(&self) -> Result<Vec<(Ipv4Addr, String)>, NativeError> {
        self.ipam.allocations()
    }
}

impl NetworkBackend for NativeBackend {
    fn status(&self) -> NetworkStatus {
        if self.options.enabled {
            NetworkStatus::ready()
        } else {
            NetworkStatus {
                ready: false,
                reason: "NetworkPluginNotReady".into(),
                message:
                    "the native network backend is disabled ([native_network] enabled = false)"
                        .into(),
            }
        }
    }

    fn attach<'a>(
        &'a self,
        pod: &'a PodNetwork,
    ) -> BoxFuture<'a, Result<Option<Attachment>, NetError>> {
        Box::pin(async move {
            if !self.options.enabled {
                return Ok(None);
            }
            Ok(Some(self.attach_pod(pod).await?))
        })
    }

    fn detach<'a>(&'a self, attachment: &'a Attachment) -> BoxFuture<'a, Result<(), NetError>> {
        Box::pin(async move {
            let Some(native) = &attachment.native else {
                return Err(NetError::ForeignAttachment {
                    backend: attachment.backend.clone(),
                });
            };
            Ok(self.detach_native(native).await?)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_fit_and_attachments_round_trip() {
        let name = NativeBackend::host_veth_name(&"ab".repeat(32));
        assert_eq!(name, "wcvabababababab");
        assert!(name.len() <= 15);
        let att = NativeAttachment {
            pod_id: "p".into(),
            netns: "/run/x".into(),
            bridge: "wcri0".into(),
            host_veth: name,
            ip: Ipv4Addr::new(10, 87, 0, 2),
            prefix: 16,
            gateway: Ipv4Addr::new(10, 87, 0, 1),
            mac: Some("02:00:00:00:00:01".into()),
            tap: true,
            port_mappings: Vec::new(),
        };
        let back: NativeAttachment =
            serde_json::from_str(&serde_json::to_string(&att).unwrap()).unwrap();
        assert_eq!(back, att);
    }

    /// A listener on `0.0.0.0:0` inside the namespace at `netns`, made from a thread that entered it.
    fn listener_in(netns: &std::path::Path) -> std::net::TcpListener {
        let netns = netns.to_path_buf();
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&netns).unwrap();
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            std::net::TcpListener::bind("0.0.0.0:0").unwrap()
        })
        .join()
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn root_native_attach_reaches_the_pod_and_detach_undoes_it() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!(
                "skipping root_native_attach_reaches_the_pod_and_detach_undoes_it: needs root for netlink"
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let bridge = format!("wcu{}", std::process::id() % 100_000);
        let backend = NativeBackend::new(NativeOptions {
            bridge: bridge.clone(),
            subnet: "10.86.251.0/24".parse().unwrap(),
            ipam_file: dir.path().join("network/ipam.json"),
            ..NativeOptions::default()
        });
        let ns = crate::NetNs::create(&dir.path().join("netns"), "pod1").unwrap();
        let pod = PodNetwork {
            pod_id: "0123456789abcdef".into(),
            netns: ns.path().to_path_buf(),
            ..PodNetwork::default()
        };
        let att = backend.attach(&pod).await.unwrap().unwrap();
        let native = att.native.clone().unwrap();
        assert_eq!(att.pod_ip(), Some("10.86.251.2".parse().unwrap()));
        assert!(native.mac.is_some());
        assert!(
            std::path::Path::new("/sys/class/net")
                .join(&native.host_veth)
                .exists()
        );

        let listener = listener_in(ns.path());
        let port = listener.local_addr().unwrap().port();
        let addr = std::net::SocketAddr::from((native.ip, port));
        std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5)).unwrap();

        backend.detach(&att).await.unwrap();
        backend.detach(&att).await.unwrap();
        assert!(
            !std::path::Path::new("/sys/class/net")
                .join(&native.host_veth)
                .exists()
        );
        assert!(backend.allocations().unwrap().is_empty());
        ns.remove().unwrap();
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &bridge])
            .output();
    }

    #[tokio::test]
    async fn disabled_attaches_nothing_and_is_not_ready() {
        let dir = tempfile::tempdir().unwrap();
        let backend = NativeBackend::new(NativeOptions {
            enabled: false,
            ipam_file: dir.path().join("ipam.json"),
            ..NativeOptions::default()
        });
        assert!(!backend.status().ready);
        assert_eq!(backend.attach(&PodNetwork::default()).await.unwrap(), None);
        let foreign = Attachment {
            backend: "cni".into(),
            ips: Vec::new(),
            cni: None,
            native: None,
        };
        assert!(matches!(
            backend.detach(&foreign).await,
            Err(NetError::ForeignAttachment { .. })
        ));
    }
}
