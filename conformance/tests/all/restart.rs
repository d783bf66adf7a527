//! The daemon restarts under running pods: nothing is lost, and a pod process that dies is noticed, whether
//! the daemon was up at the time or not.

use std::time::Duration;

use conformance::crictl::{container_state, inspect, inspectp, pod_state, wait_until};
use conformance::{Daemon, DaemonOpts, Registry, skip_unless_root};

fn start(
    d: &Daemon,
    reg: &Registry,
    pod_id: &str,
    pod: &conformance::PodConfig,
    name: &str,
    image: &str,
) -> String {
    crate::cri::run(d, reg, pod_id, pod, name, image, |c| c)
}

fn summary(d: &Daemon, id: &str) -> (String, i64, String) {
    let s = inspect(&d.endpoint(), id).unwrap();
    (
        s["status"]["state"].as_str().unwrap().to_string(),
        s["status"]["exitCode"].as_i64().unwrap(),
        s["status"]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

#[test]
fn root_restart_keeps_pods_and_notices_dead_pod_processes() {
    if skip_unless_root() {
        return;
    }
    let reg = Registry::start_with_fixtures().unwrap();
    let mut d = Daemon::start(DaemonOpts::with_registry(reg.addr())).unwrap();
    let ep = d.endpoint();

    let pod = d.pod_config("keep");
    let pod_id = d.run_pod(&pod).unwrap();
    let pid = inspectp(&ep, &pod_id).unwrap()["info"]["pid"]
        .as_u64()
        .unwrap();
    let sleeper = start(&d, &reg, &pod_id, &pod, "sleeper", "wasm/sleeper:latest");
    let hello = start(&d, &reg, &pod_id, &pod, "hello", "wasm/hello:latest");
    wait_until("hello exits", Duration::from_secs(30), || {
        Ok(container_state(&ep, &hello)? == "CONTAINER_EXITED")
    })
    .unwrap();
    let before = (summary(&d, &sleeper), summary(&d, &hello));

    // Restart: the pod process is the same process, states and exit codes are the same.
    d.restart().unwrap();
    let ep = d.endpoint();
    assert_eq!(pod_state(&ep, &pod_id).unwrap(), "SANDBOX_READY");
    assert_eq!(
        inspectp(&ep, &pod_id).unwrap()["info"]["pid"]
            .as_u64()
            .unwrap(),
        pid
    );
    assert_eq!((summary(&d, &sleeper), summary(&d, &hello)), before);
    // ...and the adopted pod still takes orders.
    d.crictl_ok(["stop", &sleeper]).unwrap();
    assert_eq!(
        summary(&d, &sleeper),
        ("CONTAINER_EXITED".into(), 137, "Error".into())
    );

    // A second pod whose process dies while the daemon is down.
    let pod2 = d.pod_config("doomed");
    let pod2_id = d.run_pod(&pod2).unwrap();
    let pid2 = inspectp(&ep, &pod2_id).unwrap()["info"]["pid"]
        .as_u64()
        .unwrap();
    let victim = start(&d, &reg, &pod2_id, &pod2, "sleeper", "wasm/sleeper:latest");
    d.stop().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid2 as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    d.restart().unwrap();
    let ep = d.endpoint();
    assert_eq!(pod_state(&ep, &pod2_id).unwrap(), "SANDBOX_NOTREADY");
    let (state, code, reason) = summary(&d, &victim);
    assert_eq!(
        (state.as_str(), code, reason.as_str()),
        ("CONTAINER_EXITED", 137, "PodProcessDied")
    );

    // A pod process that dies while the daemon watches is noticed within moments.
    let sleeper2 = start(&d, &reg, &pod_id, &pod, "sleeper2", "wasm/sleeper:latest");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until("sandbox becomes not ready", Duration::from_secs(10), || {
        Ok(pod_state(&ep, &pod_id)? == "SANDBOX_NOTREADY")
    })
    .unwrap();
    assert_eq!(summary(&d, &sleeper2).2, "PodProcessDied");
    // Exits recorded before the death survive it.
    assert_eq!(summary(&d, &hello), before.1);

    for id in [&pod_id, &pod2_id] {
        d.crictl_ok(["rmp", "-f", id]).unwrap();
    }
    assert!(d.crictl_ok(["pods", "-q"]).unwrap().trim().is_empty());
}

#[test]
fn root_unadoptable_pod_process_is_killed_at_restart() {
    if skip_unless_root() {
        return;
    }
    let reg = Registry::start_with_fixtures().unwrap();
    let mut d = Daemon::start(DaemonOpts::with_registry(reg.addr())).unwrap();
    let pod = d.pod_config("orphan");
    let pod_id = d.run_pod(&pod).unwrap();
    let pid = inspectp(&d.endpoint(), &pod_id).unwrap()["info"]["pid"]
        .as_u64()
        .unwrap() as u32;
    let sleeper = start(&d, &reg, &pod_id, &pod, "sleeper", "wasm/sleeper:latest");

    // The pod process lives on while the daemon is down, but the restarted daemon cannot reach it.
    d.stop().unwrap();
    let socket = d.state().join("pods").join(&pod_id).join("pod.sock");
    std::fs::rename(&socket, socket.with_extension("hidden")).unwrap();
    d.restart().unwrap();
    let ep = d.endpoint();

    assert_eq!(pod_state(&ep, &pod_id).unwrap(), "SANDBOX_NOTREADY");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true),
        "the unadoptable pod process {pid} still runs"
    );
    let s = inspect(&ep, &sleeper).unwrap();
    assert_eq!(s["status"]["state"], "CONTAINER_EXITED");
    assert_eq!(s["status"]["reason"], "PodProcessDied");
    let message = s["status"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("could not be adopted"), "{message}");

    d.crictl_ok(["rmp", "-f", &pod_id]).unwrap();
    assert!(d.crictl_ok(["pods", "-q"]).unwrap().trim().is_empty());
}
