//! `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf` of a pod, written once into its state directory and
//! copied into each container's root, as containerd does with its sandbox files.

use std::path::Path;

use proto::cri::{DnsConfig, PodSandboxConfig};

use crate::error::ServerError;

/// The pod's hostname: the configured one, else the pod name (what the kubelet would set anyway).
pub fn hostname(config: &PodSandboxConfig) -> String {
    if !config.hostname.is_empty() {
        return config.hostname.clone();
    }
    config
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default()
}

pub fn hosts(hostname: &str) -> String {
    format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n127.0.1.1\t{hostname}\n"
    )
}

/// resolv.conf from the DnsConfig; with none (or an empty one) the node's own resolv.conf is used, as
/// containerd does.
pub fn resolv_conf(dns: Option<&DnsConfig>) -> Option<String> {
    let dns =
        dns.filter(|d| !(d.servers.is_empty() && d.searches.is_empty() && d.options.is_empty()))?;
    let mut out = String::new();
    if !dns.searches.is_empty() {
        out.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for s in &dns.servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !dns.options.is_empty() {
        out.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    Some(out)
}

/// Writes the three files under `dir` (the pod's `etc` directory).
pub fn write_all(dir: &Path, config: &PodSandboxConfig) -> Result<(), ServerError> {
    std::fs::create_dir_all(dir).map_err(|e| ServerError::io("creating", dir, e))?;
    let name = hostname(config);
    let write = |file: &str, text: &str| {
        let p = dir.join(file);
        std::fs::write(&p, text).map_err(|e| ServerError::io("writing", p, e))
    };
    write("hostname", &format!("{name}\n"))?;
    write("hosts", &hosts(&name))?;
    let resolv = match resolv_conf(config.dns_config.as_ref()) {
        Some(text) => text,
        None => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
    };
    write("resolv.conf", &resolv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_from_dns_config() {
        let d = DnsConfig {
            servers: vec!["10.0.0.10".into()],
            searches: vec!["ns.svc.cluster.local".into(), "svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        };
        assert_eq!(
            resolv_conf(Some(&d)).as_deref(),
            Some(
                "search ns.svc.cluster.local svc.cluster.local\nnameserver 10.0.0.10\noptions ndots:5\n"
            )
        );
        assert_eq!(resolv_conf(Some(&DnsConfig::default())), None);
        assert_eq!(resolv_conf(None), None);
    }

    #[test]
    fn hostname_falls_back_to_pod_name() {
        let mut c = PodSandboxConfig {
            metadata: Some(proto::cri::PodSandboxMetadata {
                name: "web".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(hostname(&c), "web");
        c.hostname = "h1".into();
        assert_eq!(hostname(&c), "h1");
        assert!(hosts("h1").contains("127.0.1.1\th1\n"));
    }
}
