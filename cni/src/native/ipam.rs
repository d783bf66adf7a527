//! The native backend's address allocator: pod addresses out of one subnet, kept in one JSON file
//! (`<root>/network/ipam.json`) that is rewritten atomically (temp file, fsync, rename, fsync of the directory)
//! on every change, so a crash leaves either the old or the new allocations, never half of them.
//!
//! Addresses are handed out round-robin after the last one given (as CNI's host-local does), so an address
//! just released is not reused at once by the next pod while a peer may still hold it in its ARP cache.
//! Release is idempotent and only frees an address still held by the same pod.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::error::NativeError;
use super::subnet::Subnet;

/// The file's content. Allocations outside the configured subnet (after a subnet change) are kept until
/// their pods release them.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct IpamFile {
    version: u32,
    /// The last address handed out; the search for the next one starts after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last: Option<Ipv4Addr>,
    /// Address → pod id.
    allocations: BTreeMap<Ipv4Addr, String>,
}

/// Allocations persisted in one file; one process uses it at a time (the daemon), and a mutex orders the
/// daemon's own concurrent RunPodSandbox/StopPodSandbox calls.
#[derive(Debug)]
pub struct Ipam {
    path: PathBuf,
    subnet: Subnet,
    lock: Mutex<()>,
}

impl Ipam {
    pub fn new(path: PathBuf, subnet: Subnet) -> Ipam {
        Ipam {
            path,
            subnet,
            lock: Mutex::new(()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// An address for `pod_id`: the one it already holds (a retried attach), else the next free one.
    pub fn allocate(&self, pod_id: &str) -> Result<Ipv4Addr, NativeError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut file = self.load()?;
        if let Some((ip, _)) = file
            .allocations
            .iter()
            .find(|(ip, owner)| owner.as_str() == pod_id && self.subnet.contains(**ip))
        {
            return Ok(*ip);
        }
        let (first, last) = self.subnet.pod_range();
        let start = file
            .last
            .filter(|ip| self.subnet.contains(*ip))
            .map_or(first, |ip| u32::from(ip).wrapping_add(1));
        let size = last - first + 1;
        let found = (0..size)
            .map(|i| {
                let offset = (start.wrapping_sub(first).wrapping_add(i)) % size;
                Ipv4Addr::from(first + offset)
            })
            .find(|ip| !file.allocations.contains_key(ip))
            .ok_or_else(|| NativeError::Exhausted {
                subnet: self.subnet.to_string(),
                path: self.path.clone(),
            })?;
        file.allocations.insert(found, pod_id.to_string());
        file.last = Some(found);
        self.store(&file)?;
        Ok(found)
    }

    /// Frees `ip` if `pod_id` still holds it. Releasing twice, or an address never given, succeeds.
    pub fn release(&self, ip: Ipv4Addr, pod_id: &str) -> Result<(), NativeError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut file = self.load()?;
        if file.allocations.get(&ip).map(String::as_str) != Some(pod_id) {
            return Ok(());
        }
        file.allocations.remove(&ip);
        self.store(&file)
    }

    /// Every allocation (address, pod id), for status and tests.
    pub fn allocations(&self) -> Result<Vec<(Ipv4Addr, String)>, NativeError> {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        Ok(self.load()?.allocations.into_iter().collect())
    }

    fn load(&self) -> Result<IpamFile, NativeError> {
        match fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| NativeError::ParseIpam {
                path: self.path.clone(),
                source,
            }),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(IpamFile {
                version: 1,
                ..IpamFile::default()
            }),
            Err(source) => Err(NativeError::ReadIpam {
                path: self.path.clone(),
                source,
            }),
        }
    }

    fn store(&self, file: &IpamFile) -> Result<(), NativeError> {
        let err = |source| NativeError::WriteIpam {
            path: self.path.clone(),
            source,
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(err)?;
        let file = IpamFile {
            version: 1,
            ..file.clone()
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| err(std::io::Error::other(e)))?;
        let tmp = self.path.with_extension("json.tmp");
        {
            let mut out = fs::File::create(&tmp).map_err(err)?;
            out.write_all(&bytes).map_err(err)?;
            out.sync_all().map_err(err)?;
        }
        fs::rename(&tmp, &self.path).map_err(err)?;
        fs::File::open(dir).and_then(|d| d.sync_all()).map_err(err)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn ipam(dir: &Path, subnet: &str) -> Ipam {
        Ipam::new(dir.join("network/ipam.json"), subnet.parse().unwrap())
    }

    #[test]
    fn allocates_round_robin_persists_and_releases_idempotently() {
        let dir = tempfile::tempdir().unwrap();
        let a = ipam(dir.path(), "10.87.0.0/29");
        let ip1 = a.allocate("p1").unwrap();
        let ip2 = a.allocate("p2").unwrap();
        assert_eq!(
            (ip1, ip2),
            ("10.87.0.2".parse().unwrap(), "10.87.0.3".parse().unwrap())
        );
        // A retried attach gets the same address.
        assert_eq!(a.allocate("p1").unwrap(), ip1);
        // Released addresses are not reused at once.
        a.release(ip1, "p1").unwrap();
        a.release(ip1, "p1").unwrap();
        assert_eq!(
            a.allocate("p3").unwrap(),
            "10.87.0.4".parse::<Ipv4Addr>().unwrap()
        );
        // Another pod cannot free an address it does not hold.
        a.release(ip2, "p1").unwrap();
        // A new allocator on the same file (a restarted daemon) sees the same allocations.
        let b = ipam(dir.path(), "10.87.0.0/29");
        assert_eq!(
            b.allocations().unwrap(),
            vec![
                ("10.87.0.3".parse().unwrap(), "p2".to_string()),
                ("10.87.0.4".parse().unwrap(), "p3".to_string())
            ]
        );
        assert!(!dir.path().join("network/ipam.json.tmp").exists());
    }

    #[test]
    fn wraps_around_and_reports_exhaustion() {
        let dir = tempfile::tempdir().unwrap();
        // /29: .2 to .6 are pod addresses.
        let a = ipam(dir.path(), "10.87.0.0/29");
        let ips: Vec<_> = (0..5)
            .map(|i| a.allocate(&format!("p{i}")).unwrap())
            .collect();
        assert_eq!(
            ips.last().unwrap(),
            &"10.87.0.6".parse::<Ipv4Addr>().unwrap()
        );
        let err = a.allocate("one-too-many").unwrap_err();
        assert!(matches!(err, NativeError::Exhausted { .. }), "{err}");
        a.release("10.87.0.3".parse().unwrap(), "p1").unwrap();
        assert_eq!(
            a.allocate("again").unwrap(),
            "10.87.0.3".parse::<Ipv4Addr>().unwrap()
        );
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let a = ipam(dir.path(), "10.87.0.0/24");
        fs::create_dir_all(dir.path().join("network")).unwrap();
        fs::write(a.path(), b"{not json").unwrap();
        let err = a.allocate("p").unwrap_err().to_string();
        assert!(err.contains("ipam.json"), "{err}");
    }
}
