//! An IPv4 subnet in CIDR notation (`10.87.0.0/16`) and the addresses the native backend gives out of it:
//! the first host address is the bridge's (the pods' gateway), the rest go to pods; the network and
//! broadcast addresses are never used.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::NativeError;

/// An IPv4 network: its base address (host bits zero) and prefix length (8 to 30).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    base: Ipv4Addr,
    prefix: u8,
}

impl Subnet {
    /// The native backend's default: not 10.88/16 (podman's and containerd's examples), 10.85/16 (CRI-O's),
    /// 10.244/16 (flannel's) or 10.96/12 (the usual service range).
    pub const DEFAULT: Subnet = Subnet {
        base: Ipv4Addr::new(10, 87, 0, 0),
        prefix: 16,
    };

    pub fn new(base: Ipv4Addr, prefix: u8) -> Result<Subnet, NativeError> {
        let text = format!("{base}/{prefix}");
        // /31 and /32 leave no room for a gateway and a pod; shorter than /8 is surely a typo.
        if !(8..=30).contains(&prefix) {
            return Err(NativeError::Subnet {
                subnet: text,
                reason: "the prefix length must be between 8 and 30".into(),
            });
        }
        if u32::from(base) & !mask(prefix) != 0 {
            return Err(NativeError::Subnet {
                subnet: text,
                reason: format!(
                    "host bits are set (did you mean {}/{prefix}?)",
                    Ipv4Addr::from(u32::from(base) & mask(prefix))
                ),
            });
        }
        Ok(Subnet { base, prefix })
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The bridge's address, which pods use as their default gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) + 1)
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.base)
    }

    /// Pod addresses: after the gateway, before the broadcast address.
    pub fn pod_range(&self) -> (u32, u32) {
        let first = u32::from(self.base) + 2;
        let last = (u32::from(self.base) | !mask(self.prefix)) - 1;
        (first, last)
    }
}

fn mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = NativeError;

    fn from_str(text: &str) -> Result<Subnet, NativeError> {
        let bad = |reason: &str| NativeError::Subnet {
            subnet: text.to_string(),
            reason: reason.to_string(),
        };
        let (addr, prefix) = text
            .split_once('/')
            .ok_or_else(|| bad("expected IPv4 CIDR notation such as 10.87.0.0/16"))?;
        let base: Ipv4Addr = addr
            .parse()
            .map_err(|_| bad("the address part is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| bad("the prefix length is not a number"))?;
        Subnet::new(base, prefix)
    }
}

impl Serialize for Subnet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Subnet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Subnet, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_computes_gateway_and_range() {
        let s: Subnet = "10.87.0.0/16".parse().unwrap();
        assert_eq!(s.to_string(), "10.87.0.0/16");
        assert_eq!(s.gateway(), Ipv4Addr::new(10, 87, 0, 1));
        let (first, last) = s.pod_range();
        assert_eq!(Ipv4Addr::from(first), Ipv4Addr::new(10, 87, 0, 2));
        assert_eq!(Ipv4Addr::from(last), Ipv4Addr::new(10, 87, 255, 254));
        assert!(s.contains(Ipv4Addr::new(10, 87, 3, 4)));
        assert!(!s.contains(Ipv4Addr::new(10, 88, 0, 1)));
        let small: Subnet = "192.168.5.0/30".parse().unwrap();
        assert_eq!(
            small.pod_range(),
            (
                u32::from(Ipv4Addr::new(192, 168, 5, 2)),
                u32::from(Ipv4Addr::new(192, 168, 5, 2))
            )
        );
    }

    #[test]
    fn refuses_nonsense() {
        for bad in [
            "10.87.0.0",
            "10.87.0.1/16",
            "10.87.0.0/31",
            "10.87.0.0/x",
            "fd00::/64",
            "10.0.0.0/4",
        ] {
            assert!(bad.parse::<Subnet>().is_err(), "{bad}");
        }
        let err = "10.87.0.1/16".parse::<Subnet>().unwrap_err().to_string();
        assert!(err.contains("did you mean 10.87.0.0/16"), "{err}");
    }
}
