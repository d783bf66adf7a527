//! Daemon configuration: built-in defaults, then the TOML config file, then command-line flags (which win).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;
use serde::Deserialize;

mod registries;

pub use registries::RegistryConfigError;

/// Config file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/wasm-cri/config.toml";

/// Command line of the daemon.
#[derive(Debug, Parser)]
#[command(
    name = "wasm-cri",
    version,
    about = "Kubernetes CRI v1 server that runs WebAssembly pods (one process per pod, one wasmtime instance per container)",
    after_help = "Settings are taken from built-in defaults, then the config file (/etc/wasm-cri/config.toml if it exists, \
or --config), then these flags. See deploy/config.toml for every key.\n\n\
`wasm-cri image import|export` loads and writes OCI image layouts for nodes without registry access \
(`wasm-cri image --help`).\n\n\
`wasm-cri pod` is the per-pod process the daemon starts itself; it is not meant to be run by hand."
)]
pub struct Cli {
    /// TOML config file (default: /etc/wasm-cri/config.toml when present). Unknown keys are rejected.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// CRI socket to serve (default unix:///run/wasm-cri/cri.sock). A `unix://` prefix is accepted.
    #[arg(long, value_name = "PATH")]
    pub socket: Option<String>,
    /// Persistent state directory: images, pod and container records (default /var/lib/wasm-cri).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Volatile state directory: pod sockets, network namespaces (default /run/wasm-cri).
    #[arg(long, value_name = "DIR")]
    pub state: Option<PathBuf>,
    /// Registry (HOST:PORT) that may be reached over plain HTTP. Repeatable; added to the config file's list.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure_registries: Vec<String>,
    /// Log filter, e.g. `info`, `debug`, `cri_server=debug` (default info).
    #[arg(long, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Address of the streaming server behind Exec, Attach and PortForward URLs (default 127.0.0.1:0, an
    /// ephemeral port on loopback).
    #[arg(long, value_name = "IP:PORT")]
    pub stream_address: Option<SocketAddr>,
    /// Directory whose first CNI config (.conflist, .conf, .json, by name) gives pods their network
    /// (default /etc/cni/net.d).
    #[arg(long, value_name = "DIR")]
    pub cni_conf_dir: Option<PathBuf>,
    /// Directory searched for CNI plugin binaries. Repeatable; replaces the configured list
    /// (default /opt/cni/bin, /usr/lib/cni).
    #[arg(long = "cni-bin-dir", value_name = "DIR")]
    pub cni_bin_dirs: Vec<PathBuf>,
    /// Give pods a network from the built-in bridge backend when no CNI config exists (default true;
    /// `[native_network] enabled`).
    #[arg(long, value_name = "BOOL")]
    pub native_network: Option<bool>,
    /// Compile each image's Wasm once, at pull or first use, into `<root>/images/precompiled/` and let pod
    /// processes map it instead of compiling at every container create (default true; `precompile`).
    #[arg(long, value_name = "BOOL")]
    pub precompile: Option<bool>,
}

/// The config file's keys. Every key is documented in `deploy/config.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    socket: Option<String>,
    root: Option<PathBuf>,
    state: Option<PathBuf>,
    insecure_registries: Option<Vec<String>>,
    /// `[registries."<host>"]` tables, see `config/registries.rs`.
    registries: Option<std::collections::BTreeMap<String, registries::RegistryFile>>,
    log_level: Option<String>,
    cgroup_driver: Option<CgroupDriver>,
    stream_address: Option<SocketAddr>,
    precompile: Option<bool>,
    /// `[cni]`: where pod network configs and plugins are.
    cni: Option<CniFile>,
    /// `[native_network]`: the built-in backend used while no CNI config exists.
    native_network: Option<NativeNetworkFile>,
}

/// The `[native_network]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NativeNetworkFile {
    enabled: Option<bool>,
    bridge: Option<String>,
    subnet: Option<String>,
    mtu: Option<u32>,
    masquerade: Option<bool>,
    hostports: Option<bool>,
}

/// The `[cni]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CniFile {
    conf_dir: Option<PathBuf>,
    bin_dirs: Option<Vec<PathBuf>>,
    plugin_timeout_seconds: Option<u64>,
}

/// The cgroup driver reported to the kubelet through the RuntimeConfig RPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupDriver {
    Cgroupfs,
    Systemd,
}

/// Effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub socket: PathBuf,
    pub root: PathBuf,
    pub state: PathBuf,
    pub insecure_registries: Vec<String>,
    /// Mirrors, plain HTTP and credentials per registry (by host as written in references).
    pub registries: std::collections::BTreeMap<String, imageservice::RegistryHost>,
    pub log_level: String,
    pub cgroup_driver: CgroupDriver,
    /// Where the streaming server listens. Port 0 picks a free port at start-up; from then on this holds the
    /// address actually bound (the daemon rewrites it before building the runtime), which is what the
    /// Exec/Attach/PortForward URLs name.
    pub stream_address: SocketAddr,
    /// CNI config directory, plugin directories and the per-plugin timeout.
    pub cni: cni::CniOptions,
    /// The native backend (bridge, subnet, ...); its IPAM file is `<root>/network/ipam.json`.
    pub native_network: cni::NativeOptions,
    /// Whether the image store keeps a precompile cache (see `imageservice/src/precompile.rs`).
    pub precompile: bool,
}

/// Configuration problems, reported before the daemon starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing config file {path} (see deploy/config.toml for the accepted keys)")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("socket {0:?} must be an absolute path or a unix:// URL")]
    Socket(String),
    #[error("invalid [native_network] table in config file {path}: {reason}")]
    NativeNetwork { path: PathBuf, reason: String },
    #[error("checking the registries of config file {path}")]
    Registries {
        path: PathBuf,
        #[source]
        source: RegistryConfigError,
    },
}

impl Default for Config {
    fn default() -> Self {
        Config {
            socket: PathBuf::from("/run/wasm-cri/cri.sock"),
            root: PathBuf::from("/var/lib/wasm-cri"),
            state: PathBuf::from("/run/wasm-cri"),
            insecure_registries: Vec::new(),
            registries: std::collections::BTreeMap::new(),
            log_level: "info".into(),
            cgroup_driver: CgroupDriver::Cgroupfs,
            stream_address: SocketAddr::from(([127, 0, 0, 1], 0)),
            cni: cni::CniOptions::default(),
            native_network: cni::NativeOptions::default(),
            precompile: true,
        }
    }
}

impl Config {
    /// Defaults, then the config file, then flags.
    pub fn load(cli: &Cli) -> Result<Config, ConfigError> {
        let file_path = match &cli.config {
            Some(path) => Some(path.clone()),
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                Some(PathBuf::from(DEFAULT_CONFIG_FILE))
            }
            None => None,
        };
        let file = file_path.as_deref().map(read_file).transpose()?;
        let mut cfg = Config::default();
        if let Some(f) = file {
            if let Some(s) = f.socket {
                cfg.socket = socket_path(&s)?;
            }
            cfg.root = f.root.unwrap_or(cfg.root);
            cfg.state = f.state.unwrap_or(cfg.state);
            cfg.insecure_registries = f.insecure_registries.unwrap_or_default();
            if let (Some(tables), Some(path)) = (f.registries, &file_path) {
                cfg.registries = registries::registry_hosts(tables).map_err(|source| {
                    ConfigError::Registries {
                        path: path.clone(),
                        source,
                    }
                })?;
            }
            cfg.log_level = f.log_level.unwrap_or(cfg.log_level);
            cfg.cgroup_driver = f.cgroup_driver.unwrap_or(cfg.cgroup_driver);
            cfg.stream_address = f.stream_address.unwrap_or(cfg.stream_address);
            cfg.precompile = f.precompile.unwrap_or(cfg.precompile);
            if let Some(c) = f.cni {
                cfg.cni.conf_dir = c.conf_dir.unwrap_or(cfg.cni.conf_dir);
                cfg.cni.bin_dirs = c.bin_dirs.unwrap_or(cfg.cni.bin_dirs);
                if let Some(secs) = c.plugin_timeout_seconds {
                    cfg.cni.plugin_timeout = std::time::Duration::from_secs(secs.max(1));
                }
            }
            if let (Some(n), Some(path)) = (f.native_network, &file_path) {
                native_network(&mut cfg.native_network, n, path)?;
            }
        }
        if let Some(s) = &cli.socket {
            cfg.socket = socket_path(s)?;
        }
        if let Some(r) = &cli.root {
            cfg.root = r.clone();
        }
        if let Some(s) = &cli.state {
            cfg.state = s.clone();
        }
        cfg.insecure_registries
            .extend(cli.insecure_registries.iter().cloned());
        if let Some(l) = &cli.log_level {
            cfg.log_level = l.clone();
        }
        if let Some(a) = cli.stream_address {
            cfg.stream_address = a;
        }
        if let Some(d) = &cli.cni_conf_dir {
            cfg.cni.conf_dir = d.clone();
        }
        if !cli.cni_bin_dirs.is_empty() {
            cfg.cni.bin_dirs = cli.cni_bin_dirs.clone();
        }
        if let Some(enabled) = cli.native_network {
            cfg.native_network.enabled = enabled;
        }
        if let Some(enabled) = cli.precompile {
            cfg.precompile = enabled;
        }
        // Allocations are persistent state: they must outlive the pods' volatile state across reboots of the
        // daemon, like the sandbox records that name them.
        cfg.native_network.ipam_file = cfg.root.join("network").join("ipam.json");
        Ok(cfg)
    }

    /// Pod sockets, pod logs and exit records: `<state>/pods/<id>`.
    pub fn pod_state_dir(&self, pod_id: &str) -> PathBuf {
        self.state.join("pods").join(pod_id)
    }

    /// Where pod network namespaces are pinned.
    pub fn netns_dir(&self) -> PathBuf {
        self.state.join("netns")
    }
}

/// Applies the `[native_network]` table, checking the bridge name and subnet.
fn native_network(
    opts: &mut cni::NativeOptions,
    table: NativeNetworkFile,
    path: &Path,
) -> Result<(), ConfigError> {
    let invalid = |reason: String| ConfigError::NativeNetwork {
        path: path.to_path_buf(),
        reason,
    };
    opts.enabled = table.enabled.unwrap_or(opts.enabled);
    if let Some(bridge) = table.bridge {
        if bridge.is_empty() || bridge.len() > 15 || bridge.contains(['/', ' ', ':']) {
            return Err(invalid(format!(
                "bridge {bridge:?} is not an interface name (1 to 15 bytes, no '/', ':' or spaces)"
            )));
        }
        opts.bridge = bridge;
    }
    if let Some(subnet) = table.subnet {
        opts.subnet = subnet
            .parse()
            .map_err(|e: cni::native::NativeError| invalid(e.to_string()))?;
    }
    if let Some(mtu) = table.mtu {
        if !(576..=65535).contains(&mtu) {
            return Err(invalid(format!("mtu {mtu} is outside 576..=65535")));
        }
        opts.mtu = mtu;
    }
    opts.masquerade = table.masquerade.unwrap_or(opts.masquerade);
    opts.hostports = table.hostports.unwrap_or(opts.hostports);
    Ok(())
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text).map_err(|source| ConfigError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

fn parse(text: &str) -> Result<FileConfig, toml::de::Error> {
    toml::from_str(text)
}

fn socket_path(s: &str) -> Result<PathBuf, ConfigError> {
    let p = s.strip_prefix("unix://").unwrap_or(s);
    if !p.starts_with('/') {
        return Err(ConfigError::Socket(s.to_string()));
    }
    Ok(PathBuf::from(p))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::parse_from(std::iter::once("wasm-cri").chain(args.iter().copied()))
    }

    #[test]
    fn flags_override_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "socket = \"unix:///tmp/a.sock\"\nroot = \"/r\"\ninsecure_registries = [\"h:1\"]\ncgroup_driver = \"systemd\"\nstream_address = \"127.0.0.1:10010\"\n",
        )
        .unwrap();
        let c = Config::load(&cli(&[
            "--config",
            f.to_str().unwrap(),
            "--root",
            "/flag",
            "--insecure-registry",
            "h:2",
        ]))
        .unwrap();
        assert_eq!(c.socket, PathBuf::from("/tmp/a.sock"));
        assert_eq!(c.root, PathBuf::from("/flag"));
        assert_eq!(c.insecure_registries, vec!["h:1", "h:2"]);
        assert_eq!(c.cgroup_driver, CgroupDriver::Systemd);
        assert_eq!(c.stream_address, "127.0.0.1:10010".parse().unwrap());
    }

    #[test]
    fn cni_table_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(
            &f,
            "[cni]\nconf_dir = \"/etc/x/net.d\"\nbin_dirs = [\"/a\", \"/b\"]\nplugin_timeout_seconds = 5\n",
        )
        .unwrap();
        let c = Config::load(&cli(&["--config", f.to_str().unwrap()])).unwrap();
        assert_eq!(c.cni.conf_dir, PathBuf::from("/etc/x/net.d"));
        assert_eq!(
            c.cni.bin_dirs,
            vec![PathBuf::from("/a"), PathBuf::from("/b")]
        );
        assert_eq!(c.cni.plugin_timeout, std::time::Duration::from_secs(5));
        let c = Config::load(&cli(&[
            "--config",
            f.to_str().unwrap(),
            "--cni-conf-dir",
            "/flag",
            "--cni-bin-dir",
            "/c",
        ]))
        .unwrap();
        assert_eq!(c.cni.conf_dir, PathBuf::from("/flag"));
        assert_eq!(c.cni.bin_dirs, vec![PathBuf::from("/c")]);
        assert!(parse("[cni]\nconfdir = \"/x\"\n").is_err());
    }

    #[test]
    fn native_network_table_and_flag() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        let c = Config::load(&cli(&["--root", "/r"])).unwrap();
        assert!(c.native_network.enabled);
        assert_eq!(c.native_network.bridge, "wcri0");
        assert_eq!(c.native_network.subnet.to_string(), "10.87.0.0/16");
        assert_eq!(
            c.native_network.ipam_file,
            PathBuf::from("/r/network/ipam.json")
        );
        // deploy/config.toml documents the defaults.
        let deployed = Config::load(&cli(&[
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/config.toml"),
        ]))
        .unwrap();
        assert_eq!(deployed.native_network, cni::NativeOptions::default());
        std::fs::write(
            &f,
            "[native_network]\nenabled = true\nbridge = \"br-w\"\nsubnet = \"10.50.0.0/24\"\nmtu = 1400\nmasquerade = true\nhostports = false\n",
        )
        .unwrap();
        let c = Config::load(&cli(&[
            "--config",
            f.to_str().unwrap(),
            "--native-network",
            "false",
        ]))
        .unwrap();
        let n = &c.native_network;
        assert!(!n.enabled && n.masquerade && !n.hostports);
        assert_eq!((n.bridge.as_str(), n.mtu), ("br-w", 1400));
        assert_eq!(n.subnet.to_string(), "10.50.0.0/24");
        for bad in [
            "[native_network]\nsubnet = \"10.50.0.1/24\"\n",
            "[native_network]\nbridge = \"much-too-long-bridge\"\n",
            "[native_network]\nmtu = 10\n",
            "[native_network]\nbrige = \"x\"\n",
        ] {
            std::fs::write(&f, bad).unwrap();
            assert!(
                Config::load(&cli(&["--config", f.to_str().unwrap()])).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let err = parse("sokcet = \"/x\"\n").unwrap_err();
        assert!(err.to_string().contains("sokcet"), "{err}");
    }

    #[test]
    fn relative_socket_is_rejected() {
        assert!(matches!(
            socket_path("cri.sock"),
            Err(ConfigError::Socket(_))
        ));
    }

    #[test]
    fn example_config_in_deploy_parses() {
        let text = include_str!("../../deploy/config.toml");
        parse(text).unwrap();
    }
}
