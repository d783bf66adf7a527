//! CNI ADD results (spec versions 0.3.x, 0.4.0 and 1.x, plus the older `ip4`/`ip6` shape): the pod's
//! addresses, picked the way containerd picks them.
//!
//! The IPs that count are those on the interface the runtime asked for (`CNI_IFNAME`) inside the sandbox; an
//! IP without an interface index counts too (plugins such as host-local used alone set none). The pod IP is
//! the first IPv4 address, else the first address; the rest are additional IPs, in result order.

use std::net::IpAddr;

use serde::Deserialize;
use serde_json::Value;

/// The parts of a result that wasm-cri uses. Unknown keys are ignored: plugins may add their own.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
pub struct CniResult {
    #[serde(default, rename = "cniVersion")]
    pub cni_version: String,
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub dns: Dns,
    /// Pre-0.3 results.
    #[serde(default)]
    pub ip4: Option<LegacyIp>,
    #[serde(default)]
    pub ip6: Option<LegacyIp>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default)]
    pub mac: String,
    /// The namespace path for interfaces inside a sandbox; empty for host-side ones.
    #[serde(default)]
    pub sandbox: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct IpConfig {
    /// CIDR notation, e.g. `10.88.0.5/24`.
    pub address: String,
    #[serde(default)]
    pub gateway: Option<String>,
    /// Index into `interfaces`.
    #[serde(default)]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Route {
    pub dst: String,
    #[serde(default)]
    pub gw: Option<String>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
pub struct Dns {
    #[serde(default)]
    pub nameservers: Vec<String>,
    #[serde(default)]
    pub domain: String,
    #[serde(default)]
    pub search: Vec<String>,
    #[serde(default)]
    pub options: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LegacyIp {
    pub ip: String,
    #[serde(default)]
    pub gateway: Option<String>,
}

impl CniResult {
    pub fn from_value(value: &Value) -> Result<CniResult, serde_json::Error> {
        CniResult::deserialize(value)
    }

    /// The pod's addresses on `ifname`, pod IP first (see the module doc).
    pub fn pod_ips(&self, ifname: &str) -> Vec<IpAddr> {
        let mut ips: Vec<IpAddr> = self
            .ips
            .iter()
            .filter(|ip| match ip.interface {
                None => true,
                Some(i) => self
                    .interfaces
                    .get(i)
                    .is_some_and(|itf| itf.name == ifname && !itf.sandbox.is_empty()),
            })
            .filter_map(|ip| address_of(&ip.address))
            .collect();
        for legacy in [&self.ip4, &self.ip6].into_iter().flatten() {
            ips.extend(address_of(&legacy.ip));
        }
        // Stable: IPv4 first, otherwise result order.
        ips.sort_by_key(|ip| !ip.is_ipv4());
        ips
    }
}

/// The address part of `a.b.c.d/len` (or a bare address).
fn address_of(cidr: &str) -> Option<IpAddr> {
    cidr.split('/').next()?.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn parse(text: &str) -> CniResult {
        CniResult::from_value(&serde_json::from_str(text).unwrap()).unwrap()
    }

    /// What Debian's bridge + host-local + portmap (v1.1.1) answer with cniVersion 1.0.0.
    #[test]
    fn bridge_result_1_0_picks_the_sandbox_interface() {
        let r = parse(
            r#"{"cniVersion":"1.0.0",
                "interfaces":[{"name":"wcri0","mac":"aa:bb:cc:dd:ee:01"},
                              {"name":"veth1234","mac":"aa:bb:cc:dd:ee:02"},
                              {"name":"eth0","mac":"aa:bb:cc:dd:ee:03","sandbox":"/run/wasm-cri/netns/x"}],
                "ips":[{"interface":2,"address":"fd00:77::5/64","gateway":"fd00:77::1"},
                       {"interface":2,"address":"10.88.77.5/24","gateway":"10.88.77.1"},
                       {"interface":0,"address":"10.88.77.1/24"}],
                "routes":[{"dst":"0.0.0.0/0","gw":"10.88.77.1"}],
                "dns":{"nameservers":["10.0.0.10"],"search":["svc.local"]}}"#,
        );
        assert_eq!(
            r.pod_ips("eth0"),
            vec![
                "10.88.77.5".parse::<IpAddr>().unwrap(),
                "fd00:77::5".parse().unwrap()
            ]
        );
        assert_eq!(r.routes[0].gw.as_deref(), Some("10.88.77.1"));
        assert_eq!(r.dns.nameservers, vec!["10.0.0.10"]);
        assert!(r.pod_ips("eth1").is_empty());
    }

    #[test]
    fn result_0_4_with_version_fields_and_no_interfaces() {
        let r = parse(
            r#"{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.1.2.3/16","gateway":"10.1.0.1"}],"dns":{}}"#,
        );
        assert_eq!(
            r.pod_ips("eth0"),
            vec!["10.1.2.3".parse::<IpAddr>().unwrap()]
        );
    }

    #[test]
    fn legacy_result_shape() {
        let r =
            parse(r#"{"cniVersion":"0.2.0","ip4":{"ip":"10.9.0.4/24"},"ip6":{"ip":"fd00::4/64"}}"#);
        assert_eq!(r.pod_ips("eth0").len(), 2);
        assert!(r.pod_ips("eth0")[0].is_ipv4());
    }

    #[test]
    fn garbage_addresses_are_skipped_not_fatal() {
        let r = parse(
            r#"{"cniVersion":"1.0.0","ips":[{"address":"nonsense"},{"address":"10.0.0.9/8"}]}"#,
        );
        assert_eq!(
            r.pod_ips("eth0"),
            vec!["10.0.0.9".parse::<IpAddr>().unwrap()]
        );
    }
}
