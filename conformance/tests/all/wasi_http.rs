//! Wasm servers end to end, reached from the node at the pod's IP (Debian's CNI bridge plugin, as in
//! `network.rs`): a `wasi:http` handler component served by the pod process (HTTP/1.1 GET and POST echo,
//! HTTP/2 with prior knowledge, 20 requests at once, the concurrency annotation, the listen-port annotation,
//! a trapping request, the drain at stop and the stop timeout cutting a request off), a WASI 0.2 component
//! serving TCP through `wasi:sockets`, and its name lookups answered from the pod's own `/etc/hosts`.

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use conformance::crictl::{container_state, inspect, wait_until};
use conformance::{ContainerConfig, Daemon, DaemonOpts, PodConfig, Registry, skip_unless_root};
use serde_json::Value;

use crate::network::{CNI_BIN, TestNet, pod_ip};

const HTTP_IMAGE: &str = "wasm/hello-http:latest";
const SOCKETS_IMAGE: &str = "wasm/tcp-hello:latest";

/// A registry with the fixtures, a CNI network private to the test and a daemon using both.
fn setup(tag: &str, subnet: &str) -> (TestNet, Registry, Daemon) {
    let net = TestNet::new(tag);
    net.write_conflist(subnet, &[]);
    let registry = Registry::start_with_fixtures().unwrap();
    let d = Daemon::start(
        DaemonOpts::with_registry(registry.addr())
            .arg("--cni-conf-dir")
            .arg(net.conf_dir().to_str().unwrap())
            .arg("--cni-bin-dir")
            .arg(CNI_BIN),
    )
    .unwrap();
    (net, registry, d)
}

fn start(d: &Daemon, pod_id: &str, pod: &PodConfig, c: ContainerConfig) -> String {
    d.pull(&c.image).unwrap();
    let id = d.create_container(pod_id, &c, pod).unwrap();
    d.crictl_ok(["start", &id]).unwrap();
    id
}

/// `(status code, HTTP version, body)` of one request, or curl's error.
type Answer = Result<(u16, String, String), String>;

/// One curl request.
fn curl(url: &str, extra: &[&str]) -> Answer {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "60",
            "-w",
            "\n%{http_code} %{http_version}",
        ])
        .args(extra)
        .arg(url)
        .output()
        .map_err(|e| format!("running curl: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, last) = text.rsplit_once('\n').unwrap();
    let (code, version) = last.split_once(' ').unwrap();
    Ok((code.parse().unwrap(), version.to_string(), body.to_string()))
}

/// GETs `url` until the server answers (the first start compiles the component in a debug build).
fn wait_serving(d: &Daemon, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match curl(url, &["--max-time", "5"]) {
            Ok((200, _, _)) => return,
            other if Instant::now() > deadline => {
                panic!(
                    "{url} not served: {other:?}\n--- daemon log:\n{}",
                    d.log_tail(60)
                )
            }
            _ => thread::sleep(Duration::from_millis(200)),
        }
    }
}

fn wait_exited(d: &Daemon, id: &str) -> Value {
    wait_until("container exits", Duration::from_secs(120), || {
        Ok(container_state(&d.endpoint(), id)? == "CONTAINER_EXITED")
    })
    .unwrap_or_else(|e| panic!("{e:#}\n--- daemon log:\n{}", d.log_tail(60)));
    inspect(&d.endpoint(), id).unwrap()
}

/// `n` requests of `path` at once; how long until all were answered, and the answers.
fn parallel(base: &str, path: &str, n: usize) -> (Duration, Vec<Answer>) {
    let t = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let url = format!("{base}{path}");
            thread::spawn(move || curl(&url, &[]))
        })
        .collect();
    let answers = handles.into_iter().map(|h| h.join().unwrap()).collect();
    (t.elapsed(), answers)
}

#[test]
fn root_wasi_http_handler_serves_http1_http2_concurrently_and_drains_at_stop() {
    if skip_unless_root() {
        return;
    }
    let (_net, reg, d) = setup("h", "10.88.81.0/24");
    let image = reg.image_ref(HTTP_IMAGE);
    let pod = d.pod_config("web");
    let pod_id = d.run_pod(&pod).unwrap();
    let ip = pod_ip(&d, &pod_id);
    assert!(!ip.is_empty(), "no pod IP");

    // The image declares no port: the default 8080.
    let web = start(&d, &pod_id, &pod, ContainerConfig::new("web", &image));
    let base = format!("http://{ip}:8080");
    wait_serving(&d, &format!("{base}/"));
    assert_eq!(
        container_state(&d.endpoint(), &web).unwrap(),
        "CONTAINER_RUNNING"
    );

    // HTTP/1.1 GET and a POST whose body the handler echoes.
    let (code, version, body) = curl(&format!("{base}/hi?x=1"), &[]).unwrap();
    assert_eq!((code, version.as_str()), (200, "1.1"));
    assert_eq!(body, "hello from wasi:http GET /hi?x=1\n");
    let (code, _, body) = curl(&format!("{base}/echo"), &["--data-binary", "ping-body"]).unwrap();
    assert_eq!(code, 200);
    assert_eq!(body, "hello from wasi:http POST /echo\nping-body");
    // A body larger than one guest read and one write-and-flush (4 KiB) survives the round trip.
    let big = "x".repeat(100_000);
    let (code, _, body) = curl(&format!("{base}/big"), &["--data-binary", &big]).unwrap();
    assert_eq!(code, 200);
    assert_eq!(
        body.len(),
        "hello from wasi:http POST /big\n".len() + big.len()
    );

    // HTTP/2 with prior knowledge (h2c) on the same port.
    let (code, version, body) = curl(&format!("{base}/two"), &["--http2-prior-knowledge"]).unwrap();
    assert_eq!((code, version.as_str()), (200, "2"));
    assert_eq!(body, "hello from wasi:http GET /two\n");

    // 20 requests sleeping 1 s each, at once: all answered, together (one at a time would take 20 s).
    let (took, answers) = parallel(&base, "/sleep/1000", 20);
    for a in &answers {
        assert_eq!(a.as_ref().map(|(c, _, _)| *c), Ok(200), "{a:?}");
    }
    eprintln!("20 parallel 1 s requests answered in {took:?}");
    assert!(
        took < Duration::from_secs(8),
        "20 parallel requests took {took:?}"
    );

    // A trap ends that request only: 500, and the reason in the container's log.
    let (code, _, _) = curl(&format!("{base}/trap"), &[]).unwrap();
    assert_eq!(code, 500);
    let (code, _, _) = curl(&format!("{base}/after-trap"), &[]).unwrap();
    assert_eq!(code, 200);

    // A second handler in the pod: its port from the listen annotation, at most 2 requests at once.
    let limited = start(
        &d,
        &pod_id,
        &pod,
        ContainerConfig::new("limited", &image)
            .annotation("wasm-cri.io/listen", "9090")
            .annotation("wasm-cri.io/http-max-concurrency", "2"),
    );
    let limited_base = format!("http://{ip}:9090");
    wait_serving(&d, &format!("{limited_base}/"));
    let (took, answers) = parallel(&limited_base, "/sleep/1000", 6);
    for a in &answers {
        assert_eq!(a.as_ref().map(|(c, _, _)| *c), Ok(200), "{a:?}");
    }
    eprintln!("6 parallel 1 s requests with a limit of 2 answered in {took:?}");
    // Six requests of 1 s, two at a time: three rounds.
    assert!(
        took >= Duration::from_millis(2900),
        "6 requests with a limit of 2 took {took:?}"
    );

    // Handler output goes to the container log, as do the server's reports of failed requests.
    let logs = d.crictl_ok(["logs", &web]).unwrap();
    assert!(logs.contains("handled GET /hi?x=1"), "{logs}");
    assert!(logs.contains("handled POST /echo"), "{logs}");
    let all = String::from_utf8_lossy(
        &Command::new(conformance::crictl::crictl_bin())
            .args(["--runtime-endpoint", &d.endpoint(), "logs", &web])
            .output()
            .unwrap()
            .stderr,
    )
    .into_owned();
    assert!(all.contains("wasm-cri: GET /trap: 500"), "{all}");

    // Stop drains: a request in flight finishes, then the container exits 0.
    let slow_url = format!("{base}/sleep/3000");
    let slow = thread::spawn(move || curl(&slow_url, &[]));
    thread::sleep(Duration::from_millis(700));
    let t = Instant::now();
    d.crictl_ok(["stop", "--timeout", "30", &web]).unwrap();
    let stop_took = t.elapsed();
    let slow = slow.join().unwrap();
    assert_eq!(
        slow.as_ref().map(|(c, _, b)| (*c, b.as_str())),
        Ok((200, "hello from wasi:http GET /sleep/3000\n")),
        "{slow:?}"
    );
    assert!(
        stop_took >= Duration::from_millis(1500),
        "stop returned after {stop_took:?}, before the request ended"
    );
    let status = wait_exited(&d, &web);
    assert_eq!(status["status"]["exitCode"], 0, "{status}");
    assert!(
        curl(&format!("{base}/"), &["--max-time", "5"]).is_err(),
        "still serving after stop"
    );

    // The stop timeout cuts a request off: exit 137, the client sees the connection end.
    let stuck_url = format!("{limited_base}/sleep/60000");
    let stuck = thread::spawn(move || curl(&stuck_url, &[]));
    thread::sleep(Duration::from_millis(700));
    let t = Instant::now();
    d.crictl_ok(["stop", "--timeout", "1", &limited]).unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "stop took {:?}",
        t.elapsed()
    );
    let status = wait_exited(&d, &limited);
    assert_eq!(status["status"]["exitCode"], 137, "{status}");
    assert!(stuck.join().unwrap().is_err());
}

#[test]
fn root_p2_socket_server_and_name_lookup_from_the_pod_hosts_file() {
    if skip_unless_root() {
        return;
    }
    let (_net, reg, d) = setup("s", "10.88.82.0/24");
    let image = reg.image_ref(SOCKETS_IMAGE);
    // A hostname no node resolves: only the pod's /etc/hosts knows it (as 127.0.1.1).
    let hostname = format!("wcri-dns-{}", std::process::id());
    let pod = d.pod_config("sockets").hostname(&hostname);
    let pod_id = d.run_pod(&pod).unwrap();
    let ip = pod_ip(&d, &pod_id);

    // wasi:sockets: the component binds and listens itself, in the pod's network namespace.
    let server = start(
        &d,
        &pod_id,
        &pod,
        ContainerConfig::new("server", &image).args(["serve", "8081"]),
    );
    let url = format!("http://{ip}:8081/");
    wait_serving(&d, &url);
    let (code, _, body) = curl(&url, &["--http1.0"]).unwrap();
    assert_eq!((code, body.as_str()), (200, "hello from wasi:sockets\n"));
    let logs = d.crictl_ok(["logs", &server]).unwrap();
    assert!(
        logs.contains("listening on port 8081") && logs.contains("served"),
        "{logs}"
    );

    // wasi:sockets/ip-name-lookup is answered by the pod process's resolver, which reads the pod's files.
    let lookup = start(
        &d,
        &pod_id,
        &pod,
        ContainerConfig::new("lookup", &image).args(["resolve", hostname.as_str()]),
    );
    let status = wait_exited(&d, &lookup);
    let logs = d.crictl_ok(["logs", &lookup]).unwrap();
    assert_eq!(status["status"]["exitCode"], 0, "{status}\n{logs}");
    assert!(logs.contains(&format!("{hostname} 127.0.1.1")), "{logs}");
    d.crictl_ok(["stop", &server]).unwrap();
}
