//! The streaming server end to end: `crictl port-forward` (SPDY and SPDY-in-WebSocket) into a pod's own
//! network namespace and into a hostNetwork pod, dial errors reported the kubelet's way, and the checks of
//! Exec, Attach and PortForward (codes, one-time URLs), against the real daemon and the real crictl.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use conformance::crictl::{container_state, crictl_bin, wait_until};
use conformance::{Daemon, DaemonOpts, Registry, skip_unless_root};
use proto::cri::{ExecRequest, PortForwardRequest, StopPodSandboxRequest};
use tonic::Code;

use crate::client::Cri;
use crate::cri::run;

/// A TCP server on 127.0.0.1 inside the network namespace pinned at `netns` (the test's own namespace when
/// `None`): for each connection it reads until the client's end of file, answers `pong:` + what it read, and
/// closes. Runs on its own thread, which is the only one that ever joins the namespace. Returns the port.
fn echo_server(netns: Option<PathBuf>) -> u16 {
    echo_server_on(netns, "127.0.0.1:0")
}

/// [`echo_server`] bound to `addr` (e.g. `0.0.0.0:0` for every address of the namespace).
pub(crate) fn echo_server_on(netns: Option<PathBuf>, addr: &'static str) -> u16 {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        if let Some(path) = netns {
            let ns = std::fs::File::open(&path).unwrap();
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        }
        let listener = TcpListener::bind(addr).unwrap();
        tx.send(listener.local_addr().unwrap().port()).unwrap();
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut got = Vec::new();
                if conn.read_to_end(&mut got).is_ok() {
                    let _ = conn.write_all(b"pong:");
                    let _ = conn.write_all(&got);
                }
            });
        }
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap()
}

/// A port nothing listens on (bound, then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `crictl port-forward`, killed on drop.
pub(crate) struct PortForward {
    child: Child,
    local: u16,
    stderr: mpsc::Receiver<String>,
}

impl PortForward {
    /// Starts crictl and waits until it listens (it prints `Forwarding from 127.0.0.1:LOCAL`).
    pub(crate) fn start(d: &Daemon, pod: &str, remote: u16, transport: &str) -> PortForward {
        let local = free_port();
        let ep = d.endpoint();
        let mut child = Command::new(crictl_bin())
            .args(["--runtime-endpoint", &ep, "--image-endpoint", &ep])
            .args(["port-forward", "--transport", transport, pod])
            .arg(format!("{local}:{remote}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (ready_tx, ready) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("Forwarding from 127.0.0.1:") {
                    let _ = ready_tx.send(());
                }
            }
        });
        let (stderr_tx, stderr) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = stderr_tx.send(line);
            }
        });
        if ready.recv_timeout(Duration::from_secs(30)).is_err() {
            let _ = child.kill();
            let errors: Vec<String> = stderr.try_iter().collect();
            panic!(
                "crictl port-forward did not start: {}\n--- daemon log:\n{}",
                errors.join("\n"),
                d.log_tail(40)
            );
        }
        PortForward {
            child,
            local,
            stderr,
        }
    }

    /// Sends `msg`, half-closes, and returns everything the pod side answered.
    pub(crate) fn exchange(&self, msg: &[u8]) -> Vec<u8> {
        let mut conn = TcpStream::connect(("127.0.0.1", self.local)).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        conn.write_all(msg).unwrap();
        conn.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        conn.read_to_end(&mut got).unwrap();
        got
    }

    /// crictl's stderr so far.
    fn stderr(&self) -> String {
        self.stderr.try_iter().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn expect_echo(pf: &PortForward, msg: &[u8]) {
    let got = pf.exchange(msg);
    let mut want = b"pong:".to_vec();
    want.extend_from_slice(msg);
    assert!(
        got == want,
        "expected {} bytes back, got {}: {:?}...\ncrictl stderr: {}",
        want.len(),
        got.len(),
        String::from_utf8_lossy(&got[..got.len().min(64)]),
        pf.stderr()
    );
}

#[test]
fn root_port_forward_into_the_pod_network_namespace() {
    if skip_unless_root() {
        return;
    }
    let d = Daemon::start(DaemonOpts::default()).unwrap();
    let pod = d.pod_config("pf");
    let pod_id = d.run_pod(&pod).unwrap();
    // The pod has its own namespace with only `lo`: a listener there is out of reach of plain TCP.
    let port = echo_server(Some(d.state().join("netns").join(&pod_id)));

    let big: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
    for transport in ["spdy", "websocket"] {
        let pf = PortForward::start(&d, &pod_id, port, transport);
        // Several connections over one session, small and large, each with a half-close.
        expect_echo(&pf, b"ping");
        expect_echo(&pf, &big);
        expect_echo(&pf, b"");
        assert!(
            !pf.stderr().contains("error"),
            "{transport}: {}",
            pf.stderr()
        );
    }
}

#[test]
fn root_port_forward_to_a_host_network_pod_dials_the_node() {
    if skip_unless_root() {
        return;
    }
    let d = Daemon::start(DaemonOpts::default()).unwrap();
    let pod = d.pod_config("pf-host");
    let mut spec = pod.to_json();
    spec["linux"]["security_context"]["namespace_options"]["network"] = 2.into(); // NODE
    let path = d.write_json("pod-pf-host", &spec).unwrap();
    let pod_id = d
        .crictl_ok([std::ffi::OsStr::new("runp"), path.as_os_str()])
        .unwrap();
    let port = echo_server(None);
    let pf = PortForward::start(&d, &pod_id, port, "spdy");
    expect_echo(&pf, b"host");
}

#[test]
fn root_port_forward_to_a_closed_port_reports_the_dial_error() {
    if skip_unless_root() {
        return;
    }
    let d = Daemon::start(DaemonOpts::default()).unwrap();
    let pod = d.pod_config("pf-closed");
    let pod_id = d.run_pod(&pod).unwrap();
    let mut pf = PortForward::start(&d, &pod_id, 9, "spdy");
    let got = pf.exchange(b"anyone?");
    assert!(got.is_empty(), "{got:?}");
    // client-go prints the error the server wrote on the error stream, then gives the session up.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stderr = String::new();
    while Instant::now() < deadline && !stderr.contains("Connection refused") {
        stderr.push_str(&pf.stderr());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        stderr.contains("error forwarding port 9 to pod") && stderr.contains("Connection refused"),
        "{stderr}"
    );
    wait_until("crictl port-forward exits", Duration::from_secs(30), || {
        Ok(pf.child.try_wait()?.is_some())
    })
    .unwrap();
}

/// `crictl exec -i` of the toolbox's `cat`, fed `input`; returns what came back on stdout.
fn exec_with_stdin(d: &Daemon, transport: &str, container: &str, input: &[u8]) -> String {
    let ep = d.endpoint();
    let mut child = Command::new(crictl_bin())
        .args(["--runtime-endpoint", &ep, "--image-endpoint", &ep])
        .args(["exec", "-i", "--transport", transport, container])
        .args(["/fx/toolbox.wasm", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    drop(stdin);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{transport}: exec -i did not end after stdin closed"))
        .unwrap();
    assert!(out.status.success(), "{transport}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The status code of a call's answer (`Ok` if it succeeded).
fn code<T>(r: Result<T, tonic::Status>) -> Code {
    r.err().map_or(Code::Ok, |s| s.code())
}

/// `crictl exec`/`attach` on a container that is not running fail with the FailedPrecondition the runtime
/// answers; the gRPC answers crictl cannot show are checked directly.
#[test]
fn root_exec_attach_and_port_forward_check_their_requests() {
    if skip_unless_root() {
        return;
    }
    let reg = Registry::start_with_fixtures().unwrap();
    let d = Daemon::start(DaemonOpts::with_registry(reg.addr())).unwrap();
    let pod = d.pod_config("streams");
    let pod_id = d.run_pod(&pod).unwrap();

    let hello = run(&d, &reg, &pod_id, &pod, "hello", "wasm/hello:latest", |c| c);
    wait_until("hello exits", Duration::from_secs(60), || {
        Ok(container_state(&d.endpoint(), &hello)? == "CONTAINER_EXITED")
    })
    .unwrap();
    for args in [vec!["exec", &hello, "/hello.wasm"], vec!["attach", &hello]] {
        let out = d.crictl(&args).unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {stderr}");
        assert!(
            stderr.contains("FailedPrecondition") && stderr.contains("is not running"),
            "{args:?}: {stderr}"
        );
    }

    let fx = conformance::fixtures::fixtures_dir().unwrap().to_path_buf();
    let sleeper = run(
        &d,
        &reg,
        &pod_id,
        &pod,
        "sleeper",
        "wasm/sleeper:latest",
        |c| c.mount("/fx", &fx, true),
    );
    wait_until("sleeper runs", Duration::from_secs(60), || {
        Ok(container_state(&d.endpoint(), &sleeper)? == "CONTAINER_RUNNING")
    })
    .unwrap();

    // Whole exec sessions over both transports: output, stdin (with its end of file: SPDY FIN, v5 close
    // signal), exit codes on the v4+ error stream, and a runtime error as an InternalError status.
    for transport in ["spdy", "websocket"] {
        let exec = |args: &[&str]| {
            let mut all = vec!["exec", "--transport", transport, sleeper.as_str()];
            all.extend_from_slice(args);
            d.crictl(&all).unwrap()
        };
        let o = exec(&["/fx/probe.wasm", "streamed"]);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && out.contains("arg[1]=streamed"),
            "{transport}: {o:?}"
        );
        let o = exec(&["/fx/exitcode.wasm", "5"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains("command terminated with exit code 5"),
            "{transport}: {err}"
        );
        let o = exec(&["/no-such-program"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("error executing command in container") && err.contains("no-such-program"),
            "{transport}: {err}"
        );
        assert_eq!(
            exec_with_stdin(&d, transport, &sleeper, b"via stdin\n"),
            "via stdin\n"
        );
    }

    let cri = Cri::connect(d.socket());
    let exec = |req: ExecRequest| {
        let mut rt = cri.runtime.clone();
        cri.run(async move { rt.exec(req).await })
    };
    let ok = ExecRequest {
        container_id: sleeper.clone(),
        cmd: vec!["/sleeper.wasm".into()],
        stdout: true,
        stderr: true,
        ..Default::default()
    };
    assert_eq!(
        code(exec(ExecRequest {
            container_id: "0000nope".into(),
            ..ok.clone()
        })),
        Code::NotFound
    );
    assert_eq!(
        code(exec(ExecRequest {
            tty: true,
            ..ok.clone()
        })),
        Code::InvalidArgument
    );
    assert_eq!(
        code(exec(ExecRequest {
            stdout: false,
            stderr: false,
            ..ok.clone()
        })),
        Code::InvalidArgument
    );
    assert_eq!(
        code(exec(ExecRequest {
            cmd: vec![],
            ..ok.clone()
        })),
        Code::InvalidArgument
    );

    // The URL is on the configured loopback address and works once.
    let url = exec(ok).unwrap().into_inner().url;
    let rest = url
        .strip_prefix("http://127.0.0.1:")
        .unwrap_or_else(|| panic!("{url}"));
    let (port, path) = rest.split_once('/').unwrap();
    assert!(path.starts_with("exec/"), "{url}");
    let status_of = |path: &str| {
        let mut conn = TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).unwrap();
        write!(conn, "GET /{path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).unwrap();
        answer.lines().next().unwrap_or_default().to_string()
    };
    assert!(status_of(path).contains(" 400 "), "not an upgrade request");
    assert!(status_of(path).contains(" 404 "), "the token is used up");

    let pf = |id: &str| {
        let mut rt = cri.runtime.clone();
        let req = PortForwardRequest {
            pod_sandbox_id: id.into(),
            port: vec![],
        };
        cri.run(async move { rt.port_forward(req).await })
    };
    assert!(
        pf(&pod_id)
            .unwrap()
            .into_inner()
            .url
            .contains("/portforward/")
    );
    assert_eq!(code(pf("0000nope")), Code::NotFound);
    let mut rt = cri.runtime.clone();
    let stop = StopPodSandboxRequest {
        pod_sandbox_id: pod_id.clone(),
    };
    cri.run(async move { rt.stop_pod_sandbox(stop).await })
        .unwrap();
    assert_eq!(code(pf(&pod_id)), Code::FailedPrecondition);
}
