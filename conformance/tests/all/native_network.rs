//! The native network backend (no CNI config), against the real daemon: a pod gets an address on a bridge
//! private to the test, the node reaches the toolbox `httpd` at `podIP:80`, two pods reach each other, a
//! hostPort answers at `127.0.0.1:<hostPort>`, and after a daemon restart StopPodSandbox/RemovePodSandbox still
//! release the veth, the address and the rule; a TAP-mode pod exchanges Ethernet frames with a peer pod
//! through its `tap0`; and 200 run/stop/remove cycles leak no namespace, veth, address, rule, mount or fd.
//!
//! "No CNI config and the native backend disabled" (loopback only, NetworkReady false) is
//! `network.rs`'s `root_cni_config_is_picked_up_without_restart`: the harness disables the native backend
//! unless a test asks for it.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use conformance::crictl::{inspectp, pod_state};
use conformance::fixtures::{fixture_path, fixtures_dir};
use conformance::{
    ContainerConfig, Daemon, DaemonOpts, PodConfig, Registry, critest_images, skip_unless_root,
};
use serde_json::{Value, json};

use crate::client::Cri;
use crate::sockets::{http_get, in_netns};

const NGINX: &str = "e2e-test-images/nginx:1.14-2";

/// A config file with a `[native_network]` table of our own (bridge, subnet), an empty CNI config
/// directory, and the bridge deleted on drop (declare it before the daemon, so the daemon removes its pods
/// first).
pub struct NativeNet {
    dir: tempfile::TempDir,
    pub bridge: String,
    pub subnet_prefix: String,
}

impl NativeNet {
    /// `third` picks the subnet 10.86.<third>.0/24, different for each test.
    pub fn new(tag: &str, third: u8) -> NativeNet {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("net.d")).unwrap();
        let bridge = format!("wcn{tag}{}", std::process::id() % 100_000);
        std::fs::write(
            dir.path().join("config.toml"),
            format!("[native_network]\nbridge = \"{bridge}\"\nsubnet = \"10.86.{third}.0/24\"\n"),
        )
        .unwrap();
        NativeNet {
            dir,
            bridge,
            subnet_prefix: format!("10.86.{third}."),
        }
    }

    pub fn opts(&self, base: DaemonOpts) -> DaemonOpts {
        let mut opts = base
            .arg("--config")
            .arg(self.dir.path().join("config.toml").to_str().unwrap())
            .arg("--cni-conf-dir")
            .arg(self.dir.path().join("net.d").to_str().unwrap());
        opts.native_network = true;
        opts
    }

    /// Interfaces enslaved to the bridge (the host ends of pod veths).
    pub fn ports(&self) -> Vec<String> {
        match std::fs::read_dir(Path::new("/sys/class/net").join(&self.bridge).join("brif")) {
            Ok(entries) => entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// hostPort DNAT rules pointing into this test's subnet.
    pub fn dnat_rules(&self) -> Vec<String> {
        let out = Command::new("iptables")
            .args(["-w", "-t", "nat", "-S", "WCRI-HOSTPORTS"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(&format!("--to-destination {}", self.subnet_prefix)))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for NativeNet {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
        // The daemon's loopback hairpin rule for the bridge (it never removes the bridge or its rules).
        let _ = Command::new("iptables")
            .args([
                "-w",
                "-t",
                "nat",
                "-D",
                "POSTROUTING",
                "-s",
                "127.0.0.0/8",
                "-o",
            ])
            .arg(&self.bridge)
            .args(["-j", "MASQUERADE"])
            .output();
    }
}

/// Address allocations in the daemon's IPAM file.
pub fn allocations(d: &Daemon) -> Vec<String> {
    match std::fs::read(d.root().join("network/ipam.json")) {
        Ok(bytes) => {
            let file: Value = serde_json::from_slice(&bytes).unwrap();
            file["allocations"]
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default()
        }
        Err(_) => Vec::new(),
    }
}

fn native_info(d: &Daemon, pod_id: &str) -> Value {
    inspectp(&d.endpoint(), pod_id).unwrap()["info"]["network"]["native"].clone()
}

fn pod_ip(d: &Daemon, pod_id: &str) -> String {
    inspectp(&d.endpoint(), pod_id).unwrap()["status"]["network"]["ip"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn network_ready(d: &Daemon) -> bool {
    let info = d.crictl_json(["info"]).unwrap();
    info["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "NetworkReady" && c["status"] == true)
}

fn run_pod(d: &Daemon, pod: &PodConfig, port_mappings: Value) -> String {
    let mut spec = pod.to_json();
    spec["port_mappings"] = port_mappings;
    let path = d.write_json(&format!("pod-{}", pod.name), &spec).unwrap();
    d.crictl_ok([std::ffi::OsStr::new("runp"), path.as_os_str()])
        .unwrap_or_else(|e| panic!("{e:#}\n--- daemon log:\n{}", d.log_tail(40)))
}

/// GETs until the nginx stand-in answers (its first start compiles the toolbox in a debug build).
fn get_when_up(netns: Option<PathBuf>, addr: SocketAddr, d: &Daemon) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match in_netns(netns.clone(), move || http_get(addr)) {
            Ok(answer) if answer.contains("Welcome to nginx!") => return answer,
            Ok(_) | Err(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200))
            }
            other => panic!(
                "no nginx page at {addr}: {other:?}\n--- daemon log:\n{}",
                d.log_tail(60)
            ),
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn root_native_pod_ip_http_peer_hostport_restart_and_release() {
    if skip_unless_root() {
        return;
    }
    let registry = Registry::start().unwrap();
    let addr = registry.addr().to_string();
    let toolbox = fixture_path(fixtures_dir().unwrap(), "toolbox");
    conformance::block_on(
        async move { critest_images::push_critest_images(&addr, &toolbox).await },
    )
    .unwrap();
    let net = NativeNet::new("a", 1);
    let mut d = Daemon::start(net.opts(DaemonOpts::with_registry(registry.addr()))).unwrap();
    let image = registry.image_ref(NGINX);
    d.pull(&image).unwrap();
    assert!(network_ready(&d), "NetworkReady with the native backend");

    // Pod A: the nginx stand-in on port 80, with hostPort -> 80.
    let host_port = free_port();
    let pod_a = d.pod_config("web");
    let a = run_pod(
        &d,
        &pod_a,
        json!([{"container_port": 80, "host_port": host_port}]),
    );
    let ip_a = pod_ip(&d, &a);
    assert!(ip_a.starts_with(&net.subnet_prefix), "pod IP {ip_a:?}");
    assert_eq!(allocations(&d), vec![ip_a.clone()]);
    let veth_a = native_info(&d, &a)["host_veth"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(net.ports(), vec![veth_a.clone()]);
    let web = d
        .create_container(&a, &ContainerConfig::new("web", &image), &pod_a)
        .unwrap();
    d.start_container(&web).unwrap();

    // The node reaches it at podIP:80...
    let addr_a: SocketAddr = format!("{ip_a}:80").parse().unwrap();
    get_when_up(None, addr_a, &d);
    // ...and at 127.0.0.1:<hostPort>.
    let via_host_port = http_get(SocketAddr::from((Ipv4Addr::LOCALHOST, host_port))).unwrap();
    assert!(
        via_host_port.contains("Welcome to nginx!"),
        "{via_host_port}"
    );

    // Pod B reaches pod A from its own namespace.
    let b = run_pod(&d, &d.pod_config("peer"), json!([]));
    let ip_b = pod_ip(&d, &b);
    assert!(
        ip_b.starts_with(&net.subnet_prefix) && ip_b != ip_a,
        "{ip_b}"
    );
    let netns_b = d.state().join("netns").join(&b);
    assert!(get_when_up(Some(netns_b), addr_a, &d).contains("Welcome to nginx!"));

    // A restarted daemon reports the same address; the pod is still reachable.
    d.restart().unwrap();
    assert_eq!(pod_ip(&d, &a), ip_a);
    assert!(http_get(addr_a).unwrap().contains("Welcome to nginx!"));

    // Stop releases the veth, the address and the hostPort rule; stop again and remove are fine.
    d.crictl_ok(["stopp", &a]).unwrap();
    assert_eq!(pod_state(&d.endpoint(), &a).unwrap(), "SANDBOX_NOTREADY");
    assert_eq!(pod_ip(&d, &a), "");
    assert!(
        !Path::new("/sys/class/net").join(&veth_a).exists(),
        "{veth_a} still there"
    );
    assert_eq!(allocations(&d), vec![ip_b.clone()]);
    assert!(
        TcpStream::connect_timeout(
            &SocketAddr::from((Ipv4Addr::LOCALHOST, host_port)),
            Duration::from_secs(2)
        )
        .is_err(),
        "hostPort {host_port} still forwarded after stopp"
    );
    assert!(net.dnat_rules().is_empty(), "{:?}", net.dnat_rules());
    d.crictl_ok(["stopp", &a]).unwrap();
    d.crictl_ok(["rmp", &a]).unwrap();
    d.crictl_ok(["rmp", "-f", &b]).unwrap();
    assert!(allocations(&d).is_empty(), "{:?}", allocations(&d));
    assert!(net.ports().is_empty(), "{:?}", net.ports());
}

/// An ARP request "who has `target` tell `sender`" from `mac`.
fn arp_request(mac: [u8; 6], sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06]); // ARP
    f.extend_from_slice(&[0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]); // Ethernet/IPv4, request
    f.extend_from_slice(&mac);
    f.extend_from_slice(&sender.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f
}

fn parse_mac(text: &str) -> [u8; 6] {
    let bytes: Vec<u8> = text
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    bytes.try_into().unwrap()
}

/// Attaches to the persistent `tap0` in `netns` (from a thread inside it), writes `frame`, and returns the
/// first frame read back that `want` accepts, within 10 s.
fn tap_exchange(
    netns: PathBuf,
    frame: Vec<u8>,
    want: impl Fn(&[u8]) -> bool + Send + 'static,
) -> Option<Vec<u8>> {
    in_netns(Some(netns), move || {
        let mut tun = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .unwrap();
        // SAFETY: ifreq is plain old data; all-zero is valid.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(b"tap0") {
            *dst = *src as libc::c_char;
        }
        req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: tun is an open /dev/net/tun descriptor and req a valid ifreq naming the device.
        let rc = unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &mut req) };
        assert_eq!(rc, 0, "TUNSETIFF tap0: {}", std::io::Error::last_os_error());
        tun.write_all(&frame).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = vec![0u8; 2048];
        while Instant::now() < deadline {
            let mut pfd = libc::pollfd {
                fd: tun.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the duration of the call.
            let ready = unsafe { libc::poll(&mut pfd, 1, 500) };
            if ready <= 0 {
                // The ARP request may have gone out before the bridge learnt the port: ask again.
                tun.write_all(&frame).unwrap();
                continue;
            }
            let n = tun.read(&mut buf).unwrap();
            if want(&buf[..n]) {
                return Some(buf[..n].to_vec());
            }
        }
        None
    })
}

#[test]
fn root_native_tap_pod_exchanges_frames_with_a_peer() {
    if skip_unless_root() {
        return;
    }
    let net = NativeNet::new("t", 2);
    let d = Daemon::start(net.opts(DaemonOpts::default())).unwrap();
    let tap_pod = d
        .pod_config("tap")
        .annotation("wasm-cri.io/network-mode", "tap");
    let a = run_pod(&d, &tap_pod, json!([]));
    let b = run_pod(&d, &d.pod_config("peer"), json!([]));
    let info_a = native_info(&d, &a);
    assert_eq!(info_a["tap"], true, "{info_a}");
    // The allocated address is reported even though eth0 has none in the pod's kernel.
    let ip_a: Ipv4Addr = pod_ip(&d, &a).parse().unwrap();
    let ip_b: Ipv4Addr = pod_ip(&d, &b).parse().unwrap();
    let netns_a = d.state().join("netns").join(&a);
    let addrs = Command::new("nsenter")
        .arg(format!("--net={}", netns_a.display()))
        .args(["ip", "-4", "-o", "addr", "show", "dev", "eth0"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&addrs.stdout).trim().is_empty(),
        "eth0 has an address"
    );

    let mac_a = parse_mac(info_a["mac"].as_str().unwrap());
    let reply = tap_exchange(netns_a, arp_request(mac_a, ip_a, ip_b), move |f| {
        f.len() >= 42
            && f[12..14] == [0x08, 0x06]
            && f[20..22] == [0x00, 0x02]
            && f[28..32] == ip_b.octets()
    })
    .unwrap_or_else(|| {
        panic!(
            "no ARP reply from {ip_b} through tap0\n--- daemon log:\n{}",
            d.log_tail(40)
        )
    });
    // Addressed to the sandbox: its MAC and IP.
    assert_eq!(reply[0..6], mac_a);
    assert_eq!(reply[38..42], ip_a.octets());

    d.crictl_ok(["rmp", "-f", &a]).unwrap();
    d.crictl_ok(["rmp", "-f", &b]).unwrap();
    assert!(allocations(&d).is_empty());
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

fn mounts_under(path: &Path) -> Vec<String> {
    let needle = path.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&needle))
        .map(str::to_string)
        .collect()
}

#[test]
fn root_native_200_pod_cycles_leak_nothing() {
    use proto::cri::{
        PodSandboxConfig, PodSandboxMetadata, PortMapping, RemovePodSandboxRequest,
        RunPodSandboxRequest, StopPodSandboxRequest,
    };

    if skip_unless_root() {
        return;
    }
    let net = NativeNet::new("l", 3);
    // Debug logs of 600 calls are not what this test is about.
    let d = Daemon::start(net.opts(DaemonOpts::default().env("RUST_LOG", "info"))).unwrap();
    let pid = d.pid().unwrap();
    let mut cri = Cri::connect(d.socket());
    let logs = d.dir().join("logs");
    let host_port = free_port();
    let config = |i: usize| PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: format!("leak-{i}"),
            uid: format!("uid-leak-{i}-{}", std::process::id()),
            namespace: "default".into(),
            attempt: 0,
        }),
        log_directory: logs
            .join(format!("leak-{i}"))
            .to_string_lossy()
            .into_owned(),
        // Every cycle programs and removes a hostPort rule too.
        port_mappings: vec![PortMapping {
            protocol: 0,
            container_port: 8080,
            host_port: i32::from(host_port),
            host_ip: String::new(),
        }],
        ..Default::default()
    };
    let cycle = |cri: &mut Cri, i: usize| {
        let id = cri
            .run(cri.runtime.clone().run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config(i)),
                runtime_handler: String::new(),
            }))
            .unwrap_or_else(|e| panic!("cycle {i}: {e}\n--- daemon log:\n{}", d.log_tail(30)))
            .into_inner()
            .pod_sandbox_id;
        cri.run(cri.runtime.clone().stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: id.clone(),
        }))
        .unwrap();
        cri.run(
            cri.runtime
                .clone()
                .remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id }),
        )
        .unwrap();
    };
    // One warm-up cycle, so lazily made things (the bridge, the hostPort chain) are in the baseline.
    cycle(&mut cri, 0);
    std::thread::sleep(Duration::from_millis(300));
    let baseline = fd_count(pid);
    let started = Instant::now();
    for i in 1..=200 {
        cycle(&mut cri, i);
    }
    let elapsed = started.elapsed();
    eprintln!("200 native RunPodSandbox/StopPodSandbox/RemovePodSandbox cycles took {elapsed:?}");

    assert_eq!(
        std::fs::read_dir(d.state().join("netns")).map_or(0, |r| r.count()),
        0,
        "netns files left"
    );
    assert!(
        net.ports().is_empty(),
        "veths left on {}: {:?}",
        net.bridge,
        net.ports()
    );
    assert!(allocations(&d).is_empty(), "{:?}", allocations(&d));
    assert!(net.dnat_rules().is_empty(), "{:?}", net.dnat_rules());
    assert!(
        mounts_under(&d.state()).is_empty(),
        "{:?}",
        mounts_under(&d.state())
    );
    // The fd count settles once the last netlink connection task has ended.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut now = fd_count(pid);
    while now.abs_diff(baseline) > 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        now = fd_count(pid);
    }
    assert!(
        now.abs_diff(baseline) <= 2,
        "daemon fds: {baseline} before, {now} after 200 cycles"
    );
}
