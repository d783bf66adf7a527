//! Pre-opened sockets for WASI preview 1 guests, end to end: the nginx stand-in (the toolbox `httpd`, which
//! serves `LISTEN_FDS` sockets) answers HTTP inside its pod's network namespace and through
//! `crictl port-forward`, a hostNetwork pod serves a port named by the `wasm-cri.io/listen` annotation on the
//! node, a stop releases the port at once so a new container serves it again, and a second container
//! declaring a port already bound exits saying which port.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use conformance::crictl::{container_state, inspect, wait_until};
use conformance::fixtures::{fixture_path, fixtures_dir};
use conformance::{
    ContainerConfig, Daemon, DaemonOpts, PodConfig, Registry, critest_images, skip_unless_root,
};

use crate::streaming::PortForward;

const NGINX: &str = "e2e-test-images/nginx:1.14-2";
const REQUEST: &[u8] = b"GET / HTTP/1.0\r\nHost: test\r\n\r\n";

/// A registry with the critest stand-ins (the toolbox images) and a daemon that pulled the nginx one.
fn setup() -> (Registry, Daemon, String) {
    let registry = Registry::start().unwrap();
    let addr = registry.addr().to_string();
    let toolbox = fixture_path(fixtures_dir().unwrap(), "toolbox");
    conformance::block_on(
        async move { critest_images::push_critest_images(&addr, &toolbox).await },
    )
    .unwrap();
    let d = Daemon::start(DaemonOpts::with_registry(registry.addr())).unwrap();
    let image = registry.image_ref(NGINX);
    d.pull(&image).unwrap();
    (registry, d, image)
}

/// Runs `f` on a throw-away thread inside the network namespace pinned at `netns` (this thread's own when
/// `None`), so the test process's threads stay where they are.
pub(crate) fn in_netns<T: Send + 'static>(
    netns: Option<PathBuf>,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        if let Some(path) = netns {
            let ns = std::fs::File::open(&path).unwrap();
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        }
        f()
    })
    .join()
    .unwrap()
}

/// One HTTP/1.0 GET of `/` at `addr`; the whole answer, or the connect/read error.
pub(crate) fn http_get(addr: SocketAddr) -> std::io::Result<String> {
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    conn.set_read_timeout(Some(Duration::from_secs(20)))?;
    conn.write_all(REQUEST)?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer)?;
    Ok(answer)
}

/// [`http_get`] at 127.0.0.1:`port`.
fn get(port: u16) -> std::io::Result<String> {
    http_get(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
}

/// GETs `/` until the server answers (the container's first start compiles the toolbox in a debug build).
fn get_when_up(netns: Option<PathBuf>, port: u16, d: &Daemon) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match in_netns(netns.clone(), move || get(port)) {
            Ok(answer) => return answer,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!(
                "no answer on port {port}: {e}\n--- daemon log:\n{}",
                d.log_tail(60)
            ),
        }
    }
}

fn assert_nginx_page(answer: &str) {
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("Welcome to nginx!"), "{answer}");
}

fn start(d: &Daemon, pod_id: &str, pod: &PodConfig, c: &ContainerConfig) -> String {
    let id = d.create_container(pod_id, c, pod).unwrap();
    d.start_container(&id).unwrap();
    id
}

fn wait_exited(d: &Daemon, id: &str) -> serde_json::Value {
    wait_until("container exits", Duration::from_secs(120), || {
        Ok(container_state(&d.endpoint(), id)? == "CONTAINER_EXITED")
    })
    .unwrap_or_else(|e| panic!("{e:#}\n--- daemon log:\n{}", d.log_tail(60)));
    inspect(&d.endpoint(), id).unwrap()
}

#[test]
fn root_httpd_serves_pre_opened_sockets_in_the_pod_network() {
    if skip_unless_root() {
        return;
    }
    let (_reg, d, image) = setup();
    let pod = d.pod_config("web");
    let pod_id = d.run_pod(&pod).unwrap();
    let netns = Some(d.state().join("netns").join(&pod_id));

    // The image declares ExposedPorts 80/tcp; the pod process binds it in the pod's namespace.
    let web = start(&d, &pod_id, &pod, &ContainerConfig::new("web", &image));
    assert_nginx_page(&get_when_up(netns.clone(), 80, &d));
    // Several requests in a row: each connection is accepted, served and closed.
    for _ in 0..3 {
        assert_nginx_page(&in_netns(netns.clone(), || get(80)).unwrap());
    }
    // Unreachable from the node's namespace: the listener lives in the pod's.
    assert!(
        get(80)
            .map(|a| !a.contains("Welcome to nginx!"))
            .unwrap_or(true)
    );

    // The streaming server dials inside the pod's namespace too.
    let pf = PortForward::start(&d, &pod_id, 80, "spdy");
    let answer = String::from_utf8(pf.exchange(REQUEST)).unwrap();
    assert_nginx_page(&answer);
    drop(pf);

    // A second container declaring the same port cannot bind it and says so.
    let twin = start(&d, &pod_id, &pod, &ContainerConfig::new("twin", &image));
    let status = wait_exited(&d, &twin);
    let message = status["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(status["status"]["exitCode"], 126, "{status}");
    assert!(message.contains("binding TCP port 80"), "{message}");
    assert!(
        message.to_lowercase().contains("address already in use"),
        "{message}"
    );

    // A stop ends the blocked accept at once and closes the listener.
    let t = Instant::now();
    d.crictl_ok(["stop", web.as_str()]).unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "stop took {:?}",
        t.elapsed()
    );
    let refused = in_netns(netns.clone(), || get(80)).unwrap_err();
    assert_eq!(
        refused.kind(),
        std::io::ErrorKind::ConnectionRefused,
        "{refused}"
    );

    // The port is free again: a new container binds it and serves.
    let again = start(
        &d,
        &pod_id,
        &pod,
        &ContainerConfig::new("web", &image).attempt(1),
    );
    assert_nginx_page(&get_when_up(netns, 80, &d));
    d.crictl_ok(["stop", again.as_str()]).unwrap();
}

#[test]
fn root_host_network_pod_serves_an_annotated_port_on_the_node() {
    if skip_unless_root() {
        return;
    }
    let (_reg, d, image) = setup();
    let pod = d.pod_config("web-host");
    let mut spec = pod.to_json();
    spec["linux"]["security_context"]["namespace_options"]["network"] = 2.into(); // NODE
    let path = d.write_json("pod-web-host", &spec).unwrap();
    let pod_id = d
        .crictl_ok([std::ffi::OsStr::new("runp"), path.as_os_str()])
        .unwrap();

    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = ContainerConfig::new("web", &image)
        .annotation("wasm-cri.io/listen", &port.to_string())
        .args([
            "httpd",
            "-f",
            "-v",
            "-p",
            &port.to_string(),
            "-h",
            "/usr/share/nginx/html",
        ]);
    let id = d.create_container(&pod_id, &c, &pod).unwrap();
    d.start_container(&id).unwrap();
    assert_nginx_page(&get_when_up(None, port, &d));
    // The image's own port 80 was replaced by the annotation, not added to it.
    assert!(
        get(80)
            .map(|a| !a.contains("Welcome to nginx!"))
            .unwrap_or(true)
    );

    d.crictl_ok(["stop", id.as_str()]).unwrap();
    let refused = get(port).unwrap_err();
    assert_eq!(
        refused.kind(),
        std::io::ErrorKind::ConnectionRefused,
        "{refused}"
    );
    // The guest's own log names the socket it served.
    let log = std::fs::read_to_string(d.container_log_path(&pod, &c).unwrap()).unwrap();
    assert!(log.contains("pre-opened socket (fd 1073741824)"), "{log}");
}
