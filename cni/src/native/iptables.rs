//! The native backend's packet-filter rules, programmed with the `iptables` command (iptables-nft on current
//! distributions, so they are nftables rules): hostPort DNAT, as CNI's portmap plugin does, and the optional
//! masquerading of pod traffic leaving the node. Rules live in the kernel, so they survive daemon restarts
//! and need no process of ours to keep working; each rule is added only if `iptables -C` does not find it and
//! deleted only if it does, so every step can be repeated.
//!
//! Layout (table `nat`):
//! - chain `WCRI-HOSTPORTS`, jumped to from `PREROUTING` and `OUTPUT` for packets to a local address, with
//!   one `DNAT` rule per mapping, commented with the pod id;
//! - `POSTROUTING -s 127.0.0.0/8 -o <bridge> -j MASQUERADE` plus `route_localnet=1` on the bridge, so that
//!   `127.0.0.1:<hostPort>` on the node reaches the pod (the reply must go to an address the pod can route);
//! - with `masquerade = true`: `POSTROUTING -s <subnet> ! -o <bridge> -j MASQUERADE` and `ip_forward=1`.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use tokio::process::Command;
use tracing::debug;

use super::error::NativeError;
use super::subnet::Subnet;
use crate::backend::PortMapping;

const HOSTPORT_CHAIN: &str = "WCRI-HOSTPORTS";

fn args(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_string()).collect()
}

/// Runs `iptables -w -t <table> <op> <chain> <rule...>`; `Ok(false)` when the command exited 1 (for `-C`:
/// no such rule).
async fn iptables(
    table: &str,
    op: &str,
    chain: &str,
    rule: &[String],
) -> Result<bool, NativeError> {
    let mut argv = args(&["-w", "-t", table, op, chain]);
    argv.extend(rule.iter().cloned());
    let command = format!("iptables {}", argv.join(" "));
    let out = Command::new("iptables")
        .args(&argv)
        .output()
        .await
        .map_err(|source| NativeError::IptablesExec {
            command: command.clone(),
            source,
        })?;
    match out.status.code() {
        Some(0) => Ok(true),
        Some(1) if op == "-C" || op == "-N" => Ok(false),
        _ => Err(NativeError::Iptables {
            command,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        }),
    }
}

async fn ensure_rule(table: &str, chain: &str, rule: &[String]) -> Result<(), NativeError> {
    if !iptables(table, "-C", chain, rule).await? {
        iptables(table, "-A", chain, rule).await?;
        debug!(table, chain, rule = ?rule, "iptables rule added");
    }
    Ok(())
}

async fn delete_rule(table: &str, chain: &str, rule: &[String]) -> Result<(), NativeError> {
    // -C fails with exit 1 too when the chain itself is gone, which also means there is nothing to delete.
    if iptables(table, "-C", chain, rule).await? {
        iptables(table, "-D", chain, rule).await?;
        debug!(table, chain, rule = ?rule, "iptables rule deleted");
    }
    Ok(())
}

fn write_sysctl(path: &str) -> Result<(), NativeError> {
    std::fs::write(path, b"1").map_err(|source| NativeError::Sysctl {
        path: PathBuf::from(path),
        source,
    })
}

/// The chain, its jumps and the loopback hairpin for `bridge`.
pub(super) async fn ensure_hostport_base(bridge: &str) -> Result<(), NativeError> {
    // -N exits 1 when the chain exists.
    iptables("nat", "-N", HOSTPORT_CHAIN, &[]).await?;
    let jump = args(&[
        "-m",
        "addrtype",
        "--dst-type",
        "LOCAL",
        "-j",
        HOSTPORT_CHAIN,
    ]);
    ensure_rule("nat", "PREROUTING", &jump).await?;
    ensure_rule("nat", "OUTPUT", &jump).await?;
    // The kernel drops packets from 127/8 routed out of a non-loopback device unless route_localnet is set;
    // this daemon's threads are in the node's namespace, so /proc/sys/net is the node's.
    write_sysctl(&format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet"))?;
    ensure_rule(
        "nat",
        "POSTROUTING",
        &args(&["-s", "127.0.0.0/8", "-o", bridge, "-j", "MASQUERADE"]),
    )
    .await
}

/// The DNAT rule of one mapping to `pod_ip`.
fn dnat_rule(pod_id: &str, pod_ip: Ipv4Addr, m: &PortMapping) -> Result<Vec<String>, NativeError> {
    let range = NativeError::HostPortRange {
        host_port: m.host_port,
        container_port: m.container_port,
    };
    let (Ok(host), Ok(container)) = (u16::try_from(m.host_port), u16::try_from(m.container_port))
    else {
        return Err(range);
    };
    if host == 0 || container == 0 {
        return Err(range);
    }
    let proto = m.protocol.to_ascii_lowercase();
    if proto != "tcp" && proto != "udp" {
        return Err(NativeError::HostPortProtocol {
            host_port: m.host_port,
            protocol: m.protocol.clone(),
        });
    }
    let mut rule = args(&["-p", &proto]);
    if !m.host_ip.is_empty() && m.host_ip != "0.0.0.0" {
        rule.extend(args(&["-d", &m.host_ip]));
    }
    rule.extend(args(&[
        "--dport",
        &host.to_string(),
        "-m",
        "comment",
        "--comment",
        &format!("wasm-cri pod {pod_id}"),
        "-j",
        "DNAT",
        "--to-destination",
        &format!("{pod_ip}:{container}"),
    ]));
    Ok(rule)
}

/// Whether a mapping is one the native backend programs: IPv4 (or any) host address. IPv6 host addresses
/// are skipped, as the pod has no IPv6 address to forward to.
pub(super) fn is_ipv4(m: &PortMapping) -> bool {
    m.host_ip.is_empty() || m.host_ip.parse::<Ipv4Addr>().is_ok()
}

pub(super) async fn add_hostport(
    pod_id: &str,
    pod_ip: Ipv4Addr,
    m: &PortMapping,
) -> Result<(), NativeError> {
    ensure_rule("nat", HOSTPORT_CHAIN, &dnat_rule(pod_id, pod_ip, m)?).await
}

pub(super) async fn remove_hostport(
    pod_id: &str,
    pod_ip: Ipv4Addr,
    m: &PortMapping,
) -> Result<(), NativeError> {
    match dnat_rule(pod_id, pod_ip, m) {
        Ok(rule) => delete_rule("nat", HOSTPORT_CHAIN, &rule).await,
        // A mapping that was refused at attach has no rule.
        Err(_) => Ok(()),
    }
}

/// Forwarding on, and pod traffic to anywhere but the bridge masqueraded behind the node's address.
pub(super) async fn ensure_masquerade(bridge: &str, subnet: Subnet) -> Result<(), NativeError> {
    write_sysctl("/proc/sys/net/ipv4/ip_forward")?;
    ensure_rule(
        "nat",
        "POSTROUTING",
        &args(&[
            "-s",
            &subnet.to_string(),
            "!",
            "-o",
            bridge,
            "-j",
            "MASQUERADE",
        ]),
    )
    .await
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn mapping(host_ip: &str, protocol: &str, host_port: i32) -> PortMapping {
        PortMapping {
            host_port,
            container_port: 8080,
            protocol: protocol.into(),
            host_ip: host_ip.into(),
        }
    }

    #[test]
    fn dnat_rules_follow_the_mapping() {
        let ip = Ipv4Addr::new(10, 87, 0, 5);
        assert_eq!(
            dnat_rule("abc", ip, &mapping("", "tcp", 80))
                .unwrap()
                .join(" "),
            "-p tcp --dport 80 -m comment --comment wasm-cri pod abc -j DNAT --to-destination 10.87.0.5:8080"
        );
        assert_eq!(
            dnat_rule("abc", ip, &mapping("127.0.0.1", "UDP", 53)).unwrap()[..4].join(" "),
            "-p udp -d 127.0.0.1"
        );
        assert!(matches!(
            dnat_rule("abc", ip, &mapping("", "sctp", 80)),
            Err(NativeError::HostPortProtocol { .. })
        ));
        assert!(matches!(
            dnat_rule("abc", ip, &mapping("", "tcp", 70000)),
            Err(NativeError::HostPortRange { .. })
        ));
        assert!(is_ipv4(&mapping("", "tcp", 1)) && !is_ipv4(&mapping("::1", "tcp", 1)));
    }
}
