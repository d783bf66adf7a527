//! What the native backend does inside a pod's network namespace, on a thread of its own: the thread
//! `setns`es into the namespace, does its work with a netlink socket opened there (sockets stay in the
//! namespace they were created in) and exits, so no thread the daemon keeps ever changes namespace.
//!
//! - Routed mode: `eth0` gets the pod address and comes up, with the default route via the bridge.
//! - TAP mode: `eth0` comes up without an address; a persistent TAP device `tap0` is created with
//!   `ioctl(TUNSETIFF)` (the kernel refuses TAP creation over netlink) and everything arriving on either
//!   device is redirected to the other with tc (ingress qdisc + mirred egress redirect), the
//!   Kata/Firecracker "tcfilter" model: a sandbox that opens `tap0` gets the pod's L2 frames and owns L3.
//!
//! `lo` is up already: the namespace was created that way (`netns.rs`).

use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;

use super::error::NativeError;
use super::links::{Netlink, mac_of};

/// The pod's interface towards the bridge, as with every Kubernetes runtime.
pub const POD_IFNAME: &str = "eth0";
/// The TAP device of TAP mode.
pub const TAP_IFNAME: &str = "tap0";

/// What to set up inside the namespace.
#[derive(Debug, Clone)]
pub(super) struct PodSide {
    pub netns: PathBuf,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub mtu: u32,
    pub tap: bool,
}

/// Sets the pod's side up; returns `eth0`'s hardware address.
pub(super) fn configure(side: PodSide) -> Result<Option<String>, NativeError> {
    in_netns(&side.netns.clone(), move || configure_here(&side))
}

/// Runs `work` on a new thread inside the namespace pinned at `netns`, with a single-threaded tokio runtime,
/// and waits for it.
fn in_netns<T: Send + 'static>(
    netns: &Path,
    work: impl FnOnce() -> Result<T, NativeError> + Send + 'static,
) -> Result<T, NativeError> {
    let path = netns.to_path_buf();
    let ns = File::open(&path).map_err(|source| NativeError::OpenNetns {
        path: path.clone(),
        source,
    })?;
    let thread_path = path.clone();
    std::thread::Builder::new()
        .name("netns-native".into())
        .spawn(move || {
            nix::sched::setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|source| {
                NativeError::EnterNetns {
                    path: thread_path,
                    source,
                }
            })?;
            work()
        })
        .map_err(|source| NativeError::NetnsWorker {
            path: path.clone(),
            source,
        })?
        .join()
        .unwrap_or_else(|_| {
            Err(NativeError::NetnsWorker {
                path,
                source: std::io::Error::other("the thread panicked"),
            })
        })
}

/// Runs on the namespace thread.
fn configure_here(side: &PodSide) -> Result<Option<String>, NativeError> {
    if side.tap {
        create_persistent_tap(TAP_IFNAME)?;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| NativeError::NetnsWorker {
            path: side.netns.clone(),
            source,
        })?;
    rt.block_on(async {
        let nl = Netlink::connect()?;
        let eth0 = nl
            .link(POD_IFNAME)
            .await?
            .ok_or_else(|| NativeError::NoSuchLink {
                name: POD_IFNAME.into(),
            })?;
        let (index, mac) = (eth0.header.index, mac_of(&eth0));
        if side.tap {
            // The sandbox owns L3: eth0 carries no address and does not speak IPv6 on its own either.
            disable_ipv6(POD_IFNAME)?;
            let tap = nl.index(TAP_IFNAME).await?;
            nl.set_mtu(tap, TAP_IFNAME, side.mtu).await?;
            nl.up(tap, TAP_IFNAME).await?;
            nl.up(index, POD_IFNAME).await?;
            nl.redirect_ingress(index, POD_IFNAME, tap, TAP_IFNAME)
                .await?;
            nl.redirect_ingress(tap, TAP_IFNAME, index, POD_IFNAME)
                .await?;
        } else {
            nl.add_address(index, POD_IFNAME, side.ip, side.prefix)
                .await?;
            nl.up(index, POD_IFNAME).await?;
            nl.default_route(side.gateway).await?;
        }
        Ok(mac)
    })
}

/// `net.ipv6.conf.<ifname>.disable_ipv6 = 1`; /proc/sys/net answers for the calling thread's namespace.
/// A kernel without IPv6 has no such file, which is fine.
fn disable_ipv6(ifname: &str) -> Result<(), NativeError> {
    let path = PathBuf::from(format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6"));
    match std::fs::write(&path, b"1") {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other.map_err(|source| NativeError::Sysctl { path, source }),
    }
}

/// Creates the TAP device `name` in the calling thread's namespace and makes it persistent, so it outlives
/// this descriptor: the sandbox attaches to it later with the same `TUNSETIFF`.
fn create_persistent_tap(name: &str) -> Result<(), NativeError> {
    let err = |source| NativeError::CreateTap {
        name: name.into(),
        source,
    };
    let tun = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(err)?;
    let mut req = ifreq_named(name);
    // The flags member of the union is the one TUNSETIFF reads (writing a union field needs no unsafe).
    req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: tun is an open /dev/net/tun descriptor and req a valid ifreq that outlives the call.
    if unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &mut req) } < 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    // SAFETY: TUNSETPERSIST takes its argument by value; tun is the descriptor attached just above.
    if unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETPERSIST, 1 as libc::c_ulong) } < 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    // Closing the descriptor detaches it; the persistent device stays (down, no carrier until a sandbox
    // attaches).
    drop(tun);
    Ok(())
}

/// An `ifreq` with `name` (at most 15 bytes) and everything else zero.
fn ifreq_named(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().take(15).zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    req
}

/// Keeps a namespace file descriptor for a netlink request that names it (the veth peer's target).
pub(super) fn open_netns(path: &Path) -> Result<OwnedFd, NativeError> {
    let file = File::open(path).map_err(|source| NativeError::OpenNetns {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(OwnedFd::from(file))
}
