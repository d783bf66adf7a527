//! The netlink requests the native backend makes, on a route netlink socket of the network namespace the
//! calling thread was in when [`Netlink::connect`] ran: the daemon's (bridge, host ends of veths) or a pod's
//! (on a dedicated thread, see `pod_side.rs`). Creating something that exists and deleting something that
//! does not are not errors, so every step can be retried.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::RawFd;

use futures::TryStreamExt;
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkMessage};
use rtnetlink::{
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};

use super::error::NativeError;

/// `tc` filters match this link-layer protocol: all of them (`ETH_P_ALL`, in network byte order as the
/// kernel compares it).
const ETH_P_ALL_BE: u16 = (libc::ETH_P_ALL as u16).to_be();
/// The ingress qdisc's handle `ffff:`, the parent of ingress filters.
const INGRESS_PARENT: u32 = 0xffff_0000;

/// A route netlink connection; its socket closes when this is dropped.
pub(super) struct Netlink {
    handle: Handle,
}

fn nl(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NativeError {
    let op = op.into();
    move |source| NativeError::Netlink {
        op,
        source: Box::new(source),
    }
}

/// The kernel's errno in a netlink error answer.
fn errno(err: &rtnetlink::Error) -> Option<i32> {
    match err {
        rtnetlink::Error::NetlinkError(msg) => Some(-msg.raw_code()),
        _ => None,
    }
}

impl Netlink {
    /// Opens a socket in the calling thread's network namespace; its connection task runs on the current
    /// tokio runtime.
    pub(super) fn connect() -> Result<Netlink, NativeError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(NativeError::NetlinkSocket)?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    /// The link named `name`, if there is one.
    pub(super) async fn link(&self, name: &str) -> Result<Option<LinkMessage>, NativeError> {
        let mut links = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match links.try_next().await {
            Ok(link) => Ok(link),
            Err(err) if errno(&err) == Some(libc::ENODEV) => Ok(None),
            Err(err) => Err(nl(format!("looking up interface {name}"))(err)),
        }
    }

    pub(super) async fn index(&self, name: &str) -> Result<u32, NativeError> {
        self.link(name)
            .await?
            .map(|l| l.header.index)
            .ok_or_else(|| NativeError::NoSuchLink { name: name.into() })
    }

    /// The bridge `name` with `gateway/prefix` on it, up; created if missing. Returns its index.
    pub(super) async fn ensure_bridge(
        &self,
        name: &str,
        gateway: Ipv4Addr,
        prefix: u8,
        mtu: u32,
    ) -> Result<u32, NativeError> {
        if self.link(name).await?.is_none() {
            let add = self
                .handle
                .link()
                .add(LinkBridge::new(name).mtu(mtu).build())
                .execute()
                .await;
            match add {
                // Another attach made it meanwhile.
                Err(err) if errno(&err) == Some(libc::EEXIST) => {}
                other => other.map_err(nl(format!("creating bridge {name}")))?,
            }
        }
        let index = self.index(name).await?;
        match self
            .handle
            .address()
            .add(index, IpAddr::V4(gateway), prefix)
            .execute()
            .await
        {
            Err(err) if errno(&err) == Some(libc::EEXIST) => {}
            other => other.map_err(nl(format!("adding {gateway}/{prefix} to bridge {name}")))?,
        }
        self.up(index, name).await?;
        Ok(index)
    }

    /// A veth pair: `host` on the daemon's side, enslaved to `bridge` and up; its peer created right inside
    /// the namespace `netns_fd` refers to, named `peer` (the kernel does the move and the naming in the same
    /// request, so no temporary name is ever visible on the node).
    pub(super) async fn add_veth(
        &self,
        host: &str,
        peer: &str,
        bridge: u32,
        mtu: u32,
        netns_fd: RawFd,
    ) -> Result<(), NativeError> {
        let peer_msg = LinkMessageBuilder::<LinkUnspec>::new()
            .name(peer.to_string())
            .mtu(mtu)
            .setns_by_fd(netns_fd)
            .build();
        let msg = LinkVeth::new(host, peer)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
            .mtu(mtu)
            .controller(bridge)
            .up()
            .build();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(nl(format!("creating veth pair {host} <-> {peer}")))
    }

    /// Deletes the link `name`; a missing one is fine.
    pub(super) async fn delete(&self, name: &str) -> Result<(), NativeError> {
        let Some(link) = self.link(name).await? else {
            return Ok(());
        };
        match self.handle.link().del(link.header.index).execute().await {
            Err(err) if errno(&err) == Some(libc::ENODEV) => Ok(()),
            other => other.map_err(nl(format!("deleting interface {name}"))),
        }
    }

    pub(super) async fn up(&self, index: u32, name: &str) -> Result<(), NativeError> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(nl(format!("bringing {name} up")))
    }

    pub(super) async fn set_mtu(
        &self,
        index: u32,
        name: &str,
        mtu: u32,
    ) -> Result<(), NativeError> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).mtu(mtu).build())
            .execute()
            .await
            .map_err(nl(format!("setting the MTU of {name} to {mtu}")))
    }

    pub(super) async fn add_address(
        &self,
        index: u32,
        name: &str,
        ip: Ipv4Addr,
        prefix: u8,
    ) -> Result<(), NativeError> {
        match self
            .handle
            .address()
            .add(index, IpAddr::V4(ip), prefix)
            .execute()
            .await
        {
            Err(err) if errno(&err) == Some(libc::EEXIST) => Ok(()),
            other => other.map_err(nl(format!("adding {ip}/{prefix} to {name}"))),
        }
    }

    /// The default route via `gateway`.
    pub(super) async fn default_route(&self, gateway: Ipv4Addr) -> Result<(), NativeError> {
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(gateway)
            .build();
        match self.handle.route().add(route).execute().await {
            Err(err) if errno(&err) == Some(libc::EEXIST) => Ok(()),
            other => other.map_err(nl(format!("adding the default route via {gateway}"))),
        }
    }

    /// Every frame arriving on `from` leaves through `to`: an ingress qdisc on `from` and a u32 match-all
    /// filter with a mirred egress redirect (`tc filter add dev FROM parent ffff: protocol all u32 match u8 0
    /// 0 action mirred egress redirect dev TO`).
    pub(super) async fn redirect_ingress(
        &self,
        from: u32,
        from_name: &str,
        to: u32,
        to_name: &str,
    ) -> Result<(), NativeError> {
        let index = i32::try_from(from).map_err(|_| NativeError::NoSuchLink {
            name: from_name.into(),
        })?;
        match self.handle.qdisc().add(index).ingress().execute().await {
            Err(err) if errno(&err) == Some(libc::EEXIST) => {}
            other => other.map_err(nl(format!("adding an ingress qdisc to {from_name}")))?,
        }
        self.handle
            .traffic_filter(index)
            .add()
            .parent(INGRESS_PARENT)
            .protocol(ETH_P_ALL_BE)
            .redirect(to)
            .map_err(nl(format!(
                "building the redirect {from_name} -> {to_name}"
            )))?
            .execute()
            .await
            .map_err(nl(format!("redirecting {from_name} ingress to {to_name}")))
    }
}

/// The hardware address of a link, as `aa:bb:cc:dd:ee:ff`.
pub(super) fn mac_of(link: &LinkMessage) -> Option<String> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(bytes) if bytes.len() == 6 => Some(
            bytes
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":"),
        ),
        _ => None,
    })
}
