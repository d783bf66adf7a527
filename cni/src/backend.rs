//! The boundary between the runtime and whatever gives pods their network. The runtime asks a
//! [`NetworkBackend`] to attach a pod (whose namespace it has made) and later to detach it, and keeps the
//! returned [`Attachment`] with the pod, so detaching after a daemon restart or a config change undoes exactly
//! what was done. Backends: [`crate::CniBackend`] (CNI plugins), [`NoNetwork`] (loopback only), and
//! [`crate::fake::FakeBackend`] for tests, and the native netlink backend ([`crate::native`]).

use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::NetError;
use crate::plugin::conf::NetworkConfigList;

/// A boxed future, so the trait can be used as `dyn NetworkBackend`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a backend needs to know about the pod it attaches.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodNetwork {
    /// The sandbox id (`CNI_CONTAINERID`).
    pub pod_id: String,
    /// The pinned network namespace of the pod.
    pub netns: PathBuf,
    pub name: String,
    pub namespace: String,
    pub uid: String,
    /// Port mappings with a host port (the `portMappings` capability).
    pub port_mappings: Vec<PortMapping>,
    /// The pod's DNS settings (the `dns` capability).
    pub dns: Option<DnsSettings>,
    /// Traffic shaping (the `bandwidth` capability).
    pub bandwidth: Option<Bandwidth>,
    /// Requested static addresses in CIDR notation (the `ips` capability).
    pub ips: Vec<String>,
    /// TAP mode (native backend only): the pod's frames go to a TAP device instead of an addressed `eth0`.
    pub tap: bool,
}

/// One `portMappings` entry, in the JSON shape plugins (portmap) read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: i32,
    pub container_port: i32,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
    #[serde(rename = "hostIP")]
    pub host_ip: String,
}

/// The `dns` capability argument.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsSettings {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// The `bandwidth` capability argument: rates in bits per second, bursts in bits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bandwidth {
    pub ingress_rate: u64,
    pub ingress_burst: u64,
    pub egress_rate: u64,
    pub egress_burst: u64,
}

/// What attaching a pod did, kept with the pod until it is removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// The backend that made it (`cni`, ...); a backend refuses to detach another's attachment.
    pub backend: String,
    /// The pod's addresses, pod IP first.
    pub ips: Vec<IpAddr>,
    /// CNI only: everything needed to run DEL as ADD ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cni: Option<CniAttachment>,
    /// Native backend only: the bridge, veth, address and rules to undo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native: Option<crate::native::NativeAttachment>,
}

impl Attachment {
    /// The pod IP (CRI `PodSandboxNetworkStatus.ip`).
    pub fn pod_ip(&self) -> Option<IpAddr> {
        self.ips.first().copied()
    }

    /// The other addresses (CRI `additional_ips`).
    pub fn additional_ips(&self) -> &[IpAddr] {
        self.ips.get(1..).unwrap_or_default()
    }
}

/// The cached CNI ADD: the exact plugin list, parameters and capability arguments used, and the result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CniAttachment {
    pub network: NetworkConfigList,
    pub container_id: String,
    pub netns: PathBuf,
    pub ifname: String,
    pub args: Vec<(String, String)>,
    pub capability_args: Map<String, Value>,
    pub result: Value,
}

/// Readiness as CRI `Status` reports it in its `NetworkReady` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkStatus {
    pub ready: bool,
    pub reason: String,
    pub message: String,
}

impl NetworkStatus {
    pub fn ready() -> NetworkStatus {
        NetworkStatus {
            ready: true,
            reason: String::new(),
            message: String::new(),
        }
    }
}

/// Gives pods a network inside the namespace the runtime made for them.
pub trait NetworkBackend: Send + Sync {
    /// Whether pods can get a network now.
    fn status(&self) -> NetworkStatus;

    /// Attaches the pod. `None`: this backend has nothing to attach, the pod keeps only `lo`. On error nothing
    /// is left attached.
    fn attach<'a>(
        &'a self,
        pod: &'a PodNetwork,
    ) -> BoxFuture<'a, Result<Option<Attachment>, NetError>>;

    /// Undoes `attachment`. Idempotent: detaching twice, or after the namespace is gone, succeeds.
    fn detach<'a>(&'a self, attachment: &'a Attachment) -> BoxFuture<'a, Result<(), NetError>>;
}

/// No network beyond `lo`: what pods get when nothing else is configured.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoNetwork;

impl NetworkBackend for NoNetwork {
    fn status(&self) -> NetworkStatus {
        NetworkStatus::ready()
    }

    fn attach<'a>(
        &'a self,
        _pod: &'a PodNetwork,
    ) -> BoxFuture<'a, Result<Option<Attachment>, NetError>> {
        Box::pin(async { Ok(None) })
    }

    fn detach<'a>(&'a self, _attachment: &'a Attachment) -> BoxFuture<'a, Result<(), NetError>> {
        Box::pin(async { Ok(()) })
    }
}
