//! Errors of the native backend; each variant names the failed operation and keeps the cause as its source.

use std::net::Ipv4Addr;
use std::path::PathBuf;

/// A failed step of the native backend.
#[derive(Debug, thiserror::Error)]
pub enum NativeError {
    #[error("invalid native network subnet {subnet:?}: {reason}")]
    Subnet { subnet: String, reason: String },
    #[error("no free address left in {subnet} (IPAM file {path})")]
    Exhausted { subnet: String, path: PathBuf },
    #[error("reading IPAM file {path}")]
    ReadIpam {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing IPAM file {path} (move it away to start with no allocations)")]
    ParseIpam {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("writing IPAM file {path}")]
    WriteIpam {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the IPAM worker task failed")]
    IpamTask(#[source] tokio::task::JoinError),
    #[error("opening a route netlink socket")]
    NetlinkSocket(#[source] std::io::Error),
    #[error("netlink: {op}")]
    Netlink {
        op: String,
        // Boxed: rtnetlink's error can hold a whole netlink message, which would make every error large.
        #[source]
        source: Box<rtnetlink::Error>,
    },
    #[error("opening the pod network namespace {path}")]
    OpenNetns {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("entering the pod network namespace {path}")]
    EnterNetns {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("the pod network namespace worker thread for {path} failed")]
    NetnsWorker {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("interface {name} not found")]
    NoSuchLink { name: String },
    #[error("creating TAP device {name} with TUNSETIFF")]
    CreateTap {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("running {command:?} (hostPort and masquerade rules need the iptables command)")]
    IptablesExec {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{command:?} failed: {stderr}")]
    Iptables { command: String, stderr: String },
    #[error("writing sysctl {path}")]
    Sysctl {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("hostPort {host_port}/{protocol}: the native backend forwards tcp and udp only")]
    HostPortProtocol { host_port: i32, protocol: String },
    #[error("hostPort mapping {host_port}->{container_port} is out of range")]
    HostPortRange { host_port: i32, container_port: i32 },
    #[error(
        "TAP mode (annotation wasm-cri.io/network-mode: tap) needs the native backend, which is not in use (a \
         CNI config exists, or [native_network] enabled = false); remove the annotation, or the CNI config and \
         enable the native backend"
    )]
    TapNeedsNative,
    #[error("address {ip} is not in subnet {subnet}")]
    OutsideSubnet { ip: Ipv4Addr, subnet: String },
}
