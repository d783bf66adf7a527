//! Pod networking through Debian's CNI plugins (bridge + host-local + portmap + loopback from
//! containernetworking-plugins, in /usr/lib/cni), against the real daemon: a pod gets an address on a bridge
//! private to the test, the node reaches it (directly and through a hostPort on 127.0.0.1), the address
//! survives a daemon restart, and StopPodSandbox/RemovePodSandbox give back the veth and the address. Also:
//! NetworkReady follows the config directory without a restart, and a failing plugin rolls everything back.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use conformance::crictl::{inspectp, pod_state};
use conformance::{Daemon, DaemonOpts, PodConfig, skip_unless_root};
use serde_json::{Value, json};

pub(crate) const CNI_BIN: &str = "/usr/lib/cni";

/// A CNI config directory, a host-local data directory and a bridge name of our own; the bridge is deleted
/// on drop (declare it before the daemon, so the daemon removes its pods first).
pub(crate) struct TestNet {
    dir: tempfile::TempDir,
    bridge: String,
    name: String,
}

impl TestNet {
    pub(crate) fn new(tag: &str) -> TestNet {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("net.d")).unwrap();
        // Interface names hold 15 bytes.
        let bridge = format!("wcri{tag}{}", std::process::id() % 100_000);
        TestNet {
            dir,
            bridge,
            name: format!("wcri-test-{tag}"),
        }
    }

    pub(crate) fn conf_dir(&self) -> PathBuf {
        self.dir.path().join("net.d")
    }

    fn ipam_dir(&self) -> PathBuf {
        self.dir.path().join("ipam")
    }

    /// Files host-local keeps per allocated address.
    fn allocations(&self) -> Vec<String> {
        match std::fs::read_dir(self.ipam_dir().join(&self.name)) {
            Ok(entries) => entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.parse::<IpAddr>().is_ok())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// bridge (gateway on the host side so the node can reach pods, no masquerading) + host-local +
    /// portmap + loopback, with extra plugins appended.
    pub(crate) fn write_conflist(&self, subnet: &str, extra: &[Value]) {
        let mut plugins = vec![
            json!({
                "type": "bridge",
                "bridge": self.bridge,
                "isGateway": true,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": subnet}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": self.ipam_dir(),
                }
            }),
            json!({"type": "portmap", "capabilities": {"portMappings": true}}),
            json!({"type": "loopback"}),
        ];
        plugins.extend(extra.iter().cloned());
        let list = json!({"cniVersion": "1.0.0", "name": self.name, "plugins": plugins});
        std::fs::write(
            self.conf_dir().join("10-wcri-test.conflist"),
            serde_json::to_vec_pretty(&list).unwrap(),
        )
        .unwrap();
    }

    fn daemon(&self) -> Daemon {
        Daemon::start(
            DaemonOpts::default()
                .arg("--cni-conf-dir")
                .arg(self.conf_dir().to_str().unwrap())
                .arg("--cni-bin-dir")
                .arg(CNI_BIN),
        )
        .unwrap()
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// `crictl runp` of `pod` with the given CRI port mappings.
fn run_pod(d: &Daemon, pod: &PodConfig, port_mappings: Value) -> anyhow::Result<String> {
    let mut spec = pod.to_json();
    spec["port_mappings"] = port_mappings;
    let path = d.write_json(&format!("pod-{}", pod.name), &spec)?;
    d.crictl_ok([std::ffi::OsStr::new("runp"), path.as_os_str()])
}

pub(crate) fn pod_ip(d: &Daemon, pod_id: &str) -> String {
    inspectp(&d.endpoint(), pod_id).unwrap()["status"]["network"]["ip"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The host side of the pod's veth, from the cached CNI result in the verbose status.
fn host_veth(d: &Daemon, pod_id: &str, bridge: &str) -> String {
    let info = inspectp(&d.endpoint(), pod_id).unwrap();
    let interfaces = info["info"]["network"]["cni"]["result"]["interfaces"]
        .as_array()
        .unwrap()
        .clone();
    interfaces
        .iter()
        .filter(|i| i["sandbox"].as_str().unwrap_or_default().is_empty())
        .map(|i| i["name"].as_str().unwrap().to_string())
        .find(|n| n != bridge)
        .unwrap()
}

/// A TCP server on all addresses of the pod's namespace: answers `pong:` + what it read. Only its thread
/// joins the namespace.
fn server_in(netns: PathBuf) -> u16 {
    crate::streaming::echo_server_on(Some(netns), "0.0.0.0:0")
}

fn ping(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"hi")?;
    s.shutdown(std::net::Shutdown::Write)?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn network_ready(d: &Daemon) -> (bool, String, String) {
    let info = d.crictl_json(["info"]).unwrap();
    let cond = info["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "NetworkReady")
        .unwrap()
        .clone();
    (
        cond["status"].as_bool().unwrap(),
        cond["reason"].as_str().unwrap_or_default().to_string(),
        cond["message"].as_str().unwrap_or_default().to_string(),
    )
}

#[test]
fn root_cni_pod_ip_reachable_survives_restart_and_is_released() {
    if skip_unless_root() {
        return;
    }
    let net = TestNet::new("a");
    net.write_conflist("10.88.77.0/24", &[]);
    let mut d = net.daemon();
    assert!(network_ready(&d).0);

    let pod = d.pod_config("net");
    let host_port = free_port();
    let pod_id = run_pod(
        &d,
        &pod,
        json!([{"container_port": 8080, "host_port": host_port}, {"container_port": 9090}]),
    )
    .unwrap();
    let ip = pod_ip(&d, &pod_id);
    assert!(ip.starts_with("10.88.77."), "pod IP {ip:?}");
    assert_eq!(net.allocations(), vec![ip.clone()]);
    let veth = host_veth(&d, &pod_id, &net.bridge);
    assert!(link_exists(&veth) && link_exists(&net.bridge));

    // The node reaches a server inside the pod's namespace at the pod IP...
    let netns = d.state().join("netns").join(&pod_id);
    let port = server_in(netns.clone());
    let addr: SocketAddr = format!("{ip}:{port}").parse().unwrap();
    assert_eq!(ping(addr).unwrap(), "pong:hi");

    // ...and through the hostPort on loopback (portmap's DNAT), to a server on the container port.
    let (tx, rx) = mpsc::channel();
    {
        let netns = netns.clone();
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&netns).unwrap();
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let listener = TcpListener::bind("0.0.0.0:8080").unwrap();
            tx.send(()).unwrap();
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let _ = conn.write_all(b"via hostPort");
            }
        });
    }
    rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let mut via = String::new();
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], host_port)),
        Duration::from_secs(5),
    )
    .unwrap()
    .read_to_string(&mut via)
    .unwrap();
    assert_eq!(via, "via hostPort");

    // A restarted daemon reports the same address from the cached result; the pod is still reachable.
    d.restart().unwrap();
    assert_eq!(pod_ip(&d, &pod_id), ip);
    assert_eq!(ping(addr).unwrap(), "pong:hi");

    // Stop: CNI DEL gives back the veth, the address and the port rule; no IP is reported any more.
    d.crictl_ok(["stopp", &pod_id]).unwrap();
    assert_eq!(
        pod_state(&d.endpoint(), &pod_id).unwrap(),
        "SANDBOX_NOTREADY"
    );
    assert_eq!(pod_ip(&d, &pod_id), "");
    assert!(!link_exists(&veth), "veth {veth} still there after stopp");
    assert!(net.allocations().is_empty(), "{:?}", net.allocations());
    assert!(
        TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], host_port)),
            Duration::from_secs(2)
        )
        .is_err(),
        "hostPort {host_port} still forwarded after stopp"
    );
    // Stopping again and removing (a second, idempotent DEL) succeed; the namespace goes.
    d.crictl_ok(["stopp", &pod_id]).unwrap();
    d.crictl_ok(["rmp", &pod_id]).unwrap();
    assert!(!netns.exists());
    assert!(net.allocations().is_empty());
}

#[test]
fn root_cni_config_is_picked_up_without_restart() {
    if skip_unless_root() {
        return;
    }
    let net = TestNet::new("b");
    let d = net.daemon();

    // No config: NetworkReady is false with containerd's reason, and pods still run with loopback only.
    let (ready, reason, message) = network_ready(&d);
    assert!(!ready);
    assert_eq!(reason, "NetworkPluginNotReady");
    assert!(message.contains("no network config found"), "{message}");
    let lo_only = run_pod(&d, &d.pod_config("lo-only"), json!([])).unwrap();
    assert_eq!(pod_ip(&d, &lo_only), "");

    net.write_conflist("10.88.78.0/24", &[]);
    assert!(network_ready(&d).0);
    let pod_id = run_pod(&d, &d.pod_config("late"), json!([])).unwrap();
    assert!(pod_ip(&d, &pod_id).starts_with("10.88.78."));
    d.crictl_ok(["rmp", "-f", &pod_id]).unwrap();
    d.crictl_ok(["rmp", "-f", &lo_only]).unwrap();
    assert!(net.allocations().is_empty());
}

#[test]
fn root_cni_failing_plugin_rolls_back_and_is_named() {
    if skip_unless_root() {
        return;
    }
    let net = TestNet::new("c");
    // The bridge attaches the pod, then a plugin that does not exist fails the chain.
    net.write_conflist("10.88.79.0/24", &[json!({"type": "wcri-no-such-plugin"})]);
    let d = net.daemon();
    let out = d
        .crictl([
            "runp",
            d.write_json("pod", &d.pod_config("doomed").to_json())
                .unwrap()
                .to_str()
                .unwrap(),
        ])
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("wcri-no-such-plugin"), "{stderr}");
    // Nothing is left: no sandbox, no namespace, no address.
    assert!(d.crictl_ok(["pods", "-q"]).unwrap().trim().is_empty());
    assert_eq!(
        std::fs::read_dir(d.state().join("netns")).map_or(0, |r| r.count()),
        0
    );
    assert!(net.allocations().is_empty(), "{:?}", net.allocations());
}
