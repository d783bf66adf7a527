//! ExecSync end to end: commands run as new instances inside a running container, with its files, mounts and
//! environment; output, exit codes, timeouts and the errors a caller can act on.

use std::time::Duration;

use conformance::crictl::{container_state, wait_until};
use conformance::{Daemon, DaemonOpts, Registry, skip_unless_root};
use proto::cri::ExecSyncRequest;
use tonic::Code;

use crate::client::Cri;
use crate::cri::run;

#[test]
fn root_exec_sync_runs_commands_inside_the_container() {
    if skip_unless_root() {
        return;
    }
    let reg = Registry::start_with_fixtures().unwrap();
    let d = Daemon::start(DaemonOpts::with_registry(reg.addr())).unwrap();
    let fx = conformance::fixtures::fixtures_dir().unwrap().to_path_buf();
    let pod = d.pod_config("exec");
    let pod_id = d.run_pod(&pod).unwrap();
    let id = run(
        &d,
        &reg,
        &pod_id,
        &pod,
        "sleeper",
        "wasm/sleeper:latest",
        |c| {
            c.mount("/fx", &fx, true)
                .env("GREETING", "hi")
                .env("PATH", "/fx:/bin")
        },
    );
    wait_until("container runs", Duration::from_secs(30), || {
        Ok(container_state(&d.endpoint(), &id)? == "CONTAINER_RUNNING")
    })
    .unwrap();

    let cri = Cri::connect(d.socket());
    let exec = |cmd: &[&str], timeout: i64| {
        let mut rt = cri.runtime.clone();
        let req = ExecSyncRequest {
            container_id: id.clone(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout,
        };
        cri.run(async move { rt.exec_sync(req).await.map(|r| r.into_inner()) })
    };

    // argv[0] unchanged, the container's environment, its root files (the pod's /etc/hostname copied in).
    let r = exec(&["/fx/probe.wasm", "one", "/etc"], 0).unwrap();
    let out = String::from_utf8_lossy(&r.stdout);
    assert_eq!(r.exit_code, 0, "{out}");
    assert!(out.contains("arg[0]=/fx/probe.wasm"), "{out}");
    assert!(out.contains("arg[1]=one"), "{out}");
    assert!(out.contains("env:GREETING=hi"), "{out}");
    assert!(
        out.contains("ls /etc:") && out.contains("hostname"),
        "{out}"
    );

    // Found through PATH by name; a non-zero exit is a result, not an error; stderr kept apart.
    let r = exec(&["exitcode.wasm", "7"], 0).unwrap();
    assert_eq!(r.exit_code, 7);
    assert_eq!(
        String::from_utf8_lossy(&r.stderr),
        "exitcode: exiting with 7\n"
    );
    assert!(r.stdout.is_empty());

    // The same thing through crictl, as a user would type it (crictl reports the code and fails).
    let o = d
        .crictl(["exec", "-s", &id, "/fx/exitcode.wasm", "3"])
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("exited with 3"),
        "{o:?}"
    );
    let o = d
        .crictl_ok(["exec", "-s", &id, "/fx/probe.wasm", "via-crictl"])
        .unwrap();
    assert!(o.contains("arg[1]=via-crictl"), "{o}");

    // Exec through the streaming server (SPDY, as crictl speaks it): output, stdin, and exit codes.
    let o = d
        .crictl_ok(["exec", &id, "/fx/probe.wasm", "streamed"])
        .unwrap();
    assert!(o.contains("arg[1]=streamed"), "{o}");
    let o = d.crictl(["exec", &id, "/fx/exitcode.wasm", "5"]).unwrap();
    assert!(!o.status.success(), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("exiting with 5"),
        "{o:?}"
    );

    // A timeout ends the instance and answers DeadlineExceeded; the pod process says it ended it.
    let started = std::time::Instant::now();
    let e = exec(&["/sleeper.wasm"], 1).unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(20));
    let pod_log = d.state().join("pods").join(&pod_id).join("pod.log");
    wait_until("the timed-out exec ends", Duration::from_secs(10), || {
        Ok(std::fs::read_to_string(&pod_log)?.contains("timed_out=true"))
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e:#}: {}",
            std::fs::read_to_string(&pod_log).unwrap_or_default()
        )
    });

    // Errors say what was wrong.
    let e = exec(&["no-such-program"], 0).unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(e.message().contains("no-such-program"), "{e:?}");
    let e = exec(&["/etc/hostname"], 0).unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    let e = exec(&[], 0).unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    // The container's instance is unaffected, and once it is stopped nothing can be executed in it.
    assert_eq!(
        container_state(&d.endpoint(), &id).unwrap(),
        "CONTAINER_RUNNING"
    );
    d.crictl_ok(["stop", &id]).unwrap();
    let e = exec(&["/fx/probe.wasm"], 0).unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("not running"), "{e:?}");
    let e = {
        let mut rt = cri.runtime.clone();
        cri.run(async move {
            rt.exec_sync(ExecSyncRequest {
                container_id: "0123456789abcdef".into(),
                cmd: vec!["x".into()],
                timeout: 0,
            })
            .await
        })
        .unwrap_err()
    };
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
}

/// Attach: a client gets the container's output and feeds its stdin; with stdin_once the end of the client's
/// stdin is the end of the container's, so `cat` exits and the session ends with it.
#[test]
fn root_attach_connects_to_the_containers_stdio() {
    if skip_unless_root() {
        return;
    }
    let reg = Registry::start_with_fixtures().unwrap();
    let d = Daemon::start(DaemonOpts::with_registry(reg.addr())).unwrap();
    let pod = d.pod_config("attach");
    let pod_id = d.run_pod(&pod).unwrap();
    let id = run(&d, &reg, &pod_id, &pod, "cat", "wasm/toolbox:latest", |c| {
        c.command(["/toolbox.wasm", "cat"]).stdin(true)
    });
    wait_until("container runs", Duration::from_secs(30), || {
        Ok(container_state(&d.endpoint(), &id)? == "CONTAINER_RUNNING")
    })
    .unwrap();

    let mut child = std::process::Command::new(conformance::crictl::crictl_bin())
        .args(["--runtime-endpoint", &d.endpoint(), "attach", "-i", &id])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"hello through attach\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("hello through attach"),
        "{out:?}\n{}",
        d.log_tail(30)
    );
    wait_until(
        "cat exits at the end of its stdin",
        Duration::from_secs(30),
        || Ok(container_state(&d.endpoint(), &id)? == "CONTAINER_EXITED"),
    )
    .unwrap();
    // What the container wrote is in its log as well.
    assert!(
        d.crictl_ok(["logs", &id])
            .unwrap()
            .contains("hello through attach")
    );
    // Attaching to an exited container is refused with a reason.
    let o = d.crictl(["attach", &id]).unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not running"),
        "{o:?}"
    );
}
