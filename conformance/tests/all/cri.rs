//! The core slice end to end: the real wasm-cri binary, the real crictl, Debian's docker-registry and the
//! Wasm fixtures. Each test starts its own registry and daemon on temp paths.

use std::time::Duration;

use conformance::crictl::{container_state, inspect, inspectp, pod_state, wait_until};
use conformance::{ContainerConfig, Daemon, DaemonOpts, Registry, skip_unless_root};
use serde_json::Value;

use crate::client::Cri;

fn setup() -> (Registry, Daemon) {
    let registry = Registry::start_with_fixtures().unwrap();
    let daemon = Daemon::start(DaemonOpts::with_registry(registry.addr())).unwrap();
    (registry, daemon)
}

fn wait_exited(d: &Daemon, id: &str) -> Value {
    wait_until("container exits", Duration::from_secs(60), || {
        Ok(container_state(&d.endpoint(), id)? == "CONTAINER_EXITED")
    })
    .unwrap_or_else(|e| panic!("{e:#}\n--- daemon log:\n{}", d.log_tail(60)));
    inspect(&d.endpoint(), id).unwrap()
}

/// Creates and starts a container of `image` with `tweak` applied; returns its id.
pub(crate) fn run(
    d: &Daemon,
    reg: &Registry,
    pod_id: &str,
    pod: &conformance::PodConfig,
    name: &str,
    image: &str,
    tweak: impl FnOnce(ContainerConfig) -> ContainerConfig,
) -> String {
    let image = reg.image_ref(image);
    d.pull(&image).unwrap();
    let c = tweak(ContainerConfig::new(name, &image));
    let id = d.create_container(pod_id, &c, pod).unwrap();
    d.crictl_ok(["start", &id]).unwrap();
    id
}

#[test]
fn root_pod_and_container_lifecycle() {
    if skip_unless_root() {
        return;
    }
    let (reg, d) = setup();
    let v = d.crictl_ok(["version"]).unwrap();
    assert!(
        v.contains("RuntimeName:  wasm-cri") && v.contains("RuntimeApiVersion:  v1"),
        "{v}"
    );

    let pod = d.pod_config("lifecycle").hostname("wasm-host");
    let pod_id = d.run_pod(&pod).unwrap();
    assert_eq!(pod_state(&d.endpoint(), &pod_id).unwrap(), "SANDBOX_READY");
    let p = inspectp(&d.endpoint(), &pod_id).unwrap();
    assert_eq!(p["status"]["metadata"]["name"], "lifecycle");
    assert!(p["info"]["pid"].as_u64().unwrap() > 0, "{p}");

    // hello: output in the CRI log file, exit 0, reason Completed, status fields complete.
    let hello = run(&d, &reg, &pod_id, &pod, "hello", "wasm/hello:latest", |c| c);
    let s = wait_exited(&d, &hello);
    let st = &s["status"];
    assert_eq!(st["exitCode"], 0, "{s}");
    assert_eq!(st["reason"], "Completed");
    assert!(st["startedAt"].as_str().is_some() && st["finishedAt"].as_str().is_some());
    assert!(st["imageRef"].as_str().unwrap().contains("sha256:"), "{s}");
    assert!(
        st["imageId"].as_str().unwrap().starts_with("sha256:"),
        "{s}"
    );
    let log_path = st["logPath"].as_str().unwrap().to_string();
    assert!(
        log_path.starts_with('/'),
        "log path must be absolute: {log_path}"
    );
    let logs = d.crictl_ok(["logs", &hello]).unwrap();
    assert!(logs.contains("hello from wasm"), "{logs}");
    let raw = std::fs::read_to_string(&log_path).unwrap();
    let line = raw.lines().find(|l| l.contains("hello from wasm")).unwrap();
    let fields: Vec<&str> = line.splitn(4, ' ').collect();
    assert_eq!(fields.len(), 4, "{line}");
    assert!(
        fields[0].ends_with('Z') && fields[0].len() == "2026-01-01T00:00:00.000000000Z".len(),
        "{line}"
    );
    assert_eq!((fields[1], fields[2]), ("stdout", "F"), "{line}");

    // exit code N, a trap, and a p2 component.
    let ec = run(
        &d,
        &reg,
        &pod_id,
        &pod,
        "exitcode",
        "wasm/exitcode:latest",
        |c| c.args(["7"]),
    );
    let trap = run(&d, &reg, &pod_id, &pod, "trap", "wasm/trap:latest", |c| c);
    let comp = run(
        &d,
        &reg,
        &pod_id,
        &pod,
        "component",
        "wasm/hello-component:latest",
        |c| c,
    );
    let s = wait_exited(&d, &ec);
    assert_eq!(
        (
            s["status"]["exitCode"].as_i64(),
            s["status"]["reason"].as_str()
        ),
        (Some(7), Some("Error")),
        "{s}"
    );
    let s = wait_exited(&d, &trap);
    assert_eq!(s["status"]["exitCode"], 134, "{s}");
    assert!(
        s["status"]["message"]
            .as_str()
            .unwrap()
            .contains("unreachable"),
        "{s}"
    );
    let s = wait_exited(&d, &comp);
    assert_eq!(s["status"]["exitCode"], 0, "{s}");
    assert!(
        d.crictl_ok(["logs", &comp])
            .unwrap()
            .contains("hello from wasm")
    );

    // ps -a shows every container with its state.
    let ps = d.crictl_ok(["ps", "-a", "--pod", &pod_id]).unwrap();
    for name in ["hello", "exitcode", "trap", "component"] {
        assert!(ps.contains(name), "{ps}");
    }

    // A sleeper runs until stopped; stop is prompt and reports 137; a loop with no host calls stops too.
    let sleeper = run(
        &d,
        &reg,
        &pod_id,
        &pod,
        "sleeper",
        "wasm/sleeper:latest",
        |c| c,
    );
    let spin = run(&d, &reg, &pod_id, &pod, "loop", "wasm/loop:latest", |c| c);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        container_state(&d.endpoint(), &sleeper).unwrap(),
        "CONTAINER_RUNNING"
    );

    // Log rotation as the kubelet does it: rename, then ReopenContainerLog creates a fresh file.
    let sleeper_log = inspect(&d.endpoint(), &sleeper).unwrap()["status"]["logPath"]
        .as_str()
        .unwrap()
        .to_string();
    let rotated = format!("{sleeper_log}.1");
    std::fs::rename(&sleeper_log, &rotated).unwrap();
    let cri = Cri::connect(d.socket());
    let mut rtc = cri.runtime.clone();
    cri.run(
        rtc.reopen_container_log(proto::cri::ReopenContainerLogRequest {
            container_id: sleeper.clone(),
        }),
    )
    .unwrap();
    assert!(
        std::path::Path::new(&sleeper_log).exists(),
        "reopen must create a new log file"
    );
    assert!(
        std::fs::read_to_string(&rotated)
            .unwrap()
            .contains("sleeper: started")
    );
    let e = cri
        .run(
            rtc.reopen_container_log(proto::cri::ReopenContainerLogRequest {
                container_id: hello.clone(),
            }),
        )
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    for id in [&sleeper, &spin] {
        let started = std::time::Instant::now();
        d.crictl_ok(["stop", "--timeout", "30", id]).unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "stop took {:?}",
            started.elapsed()
        );
        let s = inspect(&d.endpoint(), id).unwrap();
        assert_eq!(s["status"]["state"], "CONTAINER_EXITED", "{s}");
        assert_eq!(s["status"]["exitCode"], 137, "{s}");
    }

    // rm, stopp, rmp; the pod process and its network namespace go away.
    d.crictl_ok(["rm", &hello]).unwrap();
    assert!(!d.crictl_ok(["ps", "-a", "-q"]).unwrap().contains(&hello));
    let pid = p["info"]["pid"].as_u64().unwrap();
    d.crictl_ok(["stopp", &pod_id]).unwrap();
    assert_eq!(
        pod_state(&d.endpoint(), &pod_id).unwrap(),
        "SANDBOX_NOTREADY"
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "pod process {pid} still running"
    );
    d.crictl_ok(["rmp", &pod_id]).unwrap();
    assert!(d.crictl_ok(["pods", "-q"]).unwrap().trim().is_empty());
    assert!(d.crictl_ok(["ps", "-a", "-q"]).unwrap().trim().is_empty());
    assert_eq!(
        std::fs::read_dir(d.state().join("netns")).unwrap().count(),
        0
    );
}

#[test]
fn root_env_args_mounts_and_etc_files() {
    if skip_unless_root() {
        return;
    }
    let (reg, d) = setup();
    let pod = d.pod_config("probe").hostname("probe-host");
    let pod_id = d.run_pod(&pod).unwrap();
    let rw = tempfile::tempdir().unwrap();
    let ro = tempfile::tempdir().unwrap();
    std::fs::write(ro.path().join("given.txt"), "from the host").unwrap();
    let id = run(&d, &reg, &pod_id, &pod, "probe", "wasm/probe:latest", |c| {
        c.args(["first", "second arg"])
            .env("GREETING", "hi there")
            .env("PROBE_DIRS", "/data:/config")
            .mount("/data", rw.path(), false)
            .mount("/config", ro.path(), true)
    });
    let s = wait_exited(&d, &id);
    let out = d.crictl_ok(["logs", &id]).unwrap();
    assert_eq!(s["status"]["exitCode"], 0, "{s}\n{out}");
    assert!(out.contains("arg[0]=/probe.wasm"), "{out}");
    assert!(
        out.contains("arg[1]=first") && out.contains("arg[2]=second arg"),
        "{out}"
    );
    assert!(out.contains("env:GREETING=hi there"), "{out}");
    assert!(out.contains("write /data: ok"), "{out}");
    // The write into the read-only mount is refused (by the kernel when running as root; see
    // root_read_only_mounts_behave_as_on_linux for the error a guest sees).
    assert!(write_refused(&out, "/config"), "{out}");
    assert!(!ro.path().join("wcri-probe").exists());
    assert!(
        out.contains("probe-host"),
        "/etc/hostname must be the pod's hostname: {out}"
    );
    assert!(
        std::fs::read_dir(rw.path()).unwrap().count() > 0,
        "the write to /data reached the host dir"
    );
}

#[test]
fn root_memory_limit_is_oomkilled() {
    if skip_unless_root() {
        return;
    }
    let (reg, d) = setup();
    let pod = d.pod_config("oom");
    let pod_id = d.run_pod(&pod).unwrap();
    let id = run(&d, &reg, &pod_id, &pod, "hog", "wasm/memhog:latest", |c| {
        c.memory_limit(32 << 20)
    });
    let s = wait_exited(&d, &id);
    assert_eq!(s["status"]["exitCode"], 137, "{s}");
    assert_eq!(s["status"]["reason"], "OOMKilled", "{s}");
    // It really ran up to the limit first.
    let out = d.crictl_ok(["logs", &id]).unwrap();
    assert!(out.contains("allocated 20 MiB"), "{out}");
    // Under its limit the same program keeps running.
    let ok = run(
        &d,
        &reg,
        &pod_id,
        &pod,
        "small",
        "wasm/memhog:latest",
        |c| c.args(["4"]).memory_limit(32 << 20),
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        container_state(&d.endpoint(), &ok).unwrap(),
        "CONTAINER_RUNNING"
    );
}

#[test]
fn root_linux_image_is_refused_with_a_clear_message() {
    if skip_unless_root() {
        return;
    }
    let (reg, d) = setup();
    let pod = d.pod_config("elf");
    let pod_id = d.run_pod(&pod).unwrap();
    let image = reg.image_ref("linux/true:latest");
    d.pull(&image).unwrap();
    let spec = d
        .write_json("elf", &ContainerConfig::new("elf", &image).to_json())
        .unwrap();
    let pod_spec = d.write_json("elf-pod", &pod.to_json()).unwrap();
    let out = d
        .crictl([
            std::ffi::OsStr::new("create"),
            pod_id.as_ref(),
            spec.as_os_str(),
            pod_spec.as_os_str(),
        ])
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("FailedPrecondition"), "{err}");
    assert!(
        err.contains("ELF") && err.contains("not WebAssembly"),
        "{err}"
    );
}

#[test]
fn root_idempotency_and_status_codes() {
    if skip_unless_root() {
        return;
    }
    use proto::cri::*;
    let (reg, d) = setup();
    let cri = Cri::connect(d.socket());
    let missing = "0".repeat(64);
    let mut rt = cri.runtime.clone();
    let mut im = cri.image.clone();
    cri.run(async {
        rt.stop_container(StopContainerRequest {
            container_id: missing.clone(),
            timeout: 0,
        })
        .await
        .unwrap();
        rt.remove_container(RemoveContainerRequest {
            container_id: missing.clone(),
        })
        .await
        .unwrap();
        rt.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: missing.clone(),
        })
        .await
        .unwrap();
        rt.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: missing.clone(),
        })
        .await
        .unwrap();
        let e = rt
            .container_status(ContainerStatusRequest {
                container_id: missing.clone(),
                verbose: false,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
        let e = rt
            .exec(ExecRequest {
                container_id: missing.clone(),
                cmd: vec!["sh".into()],
                stdout: true,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");
        let s = im
            .image_status(ImageStatusRequest {
                image: Some(ImageSpec {
                    image: "nope/nothing:1".into(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await
            .unwrap();
        assert!(s.into_inner().image.is_none());
        im.remove_image(RemoveImageRequest {
            image: Some(ImageSpec {
                image: "nope/nothing:1".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
        let e = rt
            .run_pod_sandbox(RunPodSandboxRequest::default())
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    });

    // A retried RunPodSandbox (same name, namespace, uid, attempt) gets the same sandbox back.
    let pod = d.pod_config("retry");
    let first = d.run_pod(&pod).unwrap();
    let second = d.run_pod(&pod).unwrap();
    assert_eq!(first, second);
    assert_eq!(d.crictl_ok(["pods", "-q"]).unwrap().lines().count(), 1);

    // List filters: label selector, state, id prefix, pod of a container.
    let labelled = d.pod_config("labelled").label("app", "web");
    let web = d.run_pod(&labelled).unwrap();
    let q = |args: &[&str]| -> Vec<String> {
        d.crictl_ok(args)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(q(&["pods", "-q", "--label", "app=web"]), vec![web.clone()]);
    assert!(q(&["pods", "-q", "--label", "app=db"]).is_empty());
    assert_eq!(q(&["pods", "-q", "--id", &web[..12]]), vec![web.clone()]);
    d.crictl_ok(["stopp", &first]).unwrap();
    assert_eq!(
        q(&["pods", "-q", "--state", "notready"]),
        vec![first.clone()]
    );
    assert_eq!(q(&["pods", "-q", "--state", "ready"]), vec![web.clone()]);
    let hello = crate::cri::run(
        &d,
        &reg,
        &web,
        &labelled,
        "hello",
        "wasm/hello:latest",
        |c| c.label("tier", "front"),
    );
    wait_until("hello exits", Duration::from_secs(30), || {
        Ok(container_state(&d.endpoint(), &hello)? == "CONTAINER_EXITED")
    })
    .unwrap();
    assert_eq!(
        q(&["ps", "-q", "-a", "--label", "tier=front"]),
        vec![hello.clone()]
    );
    assert!(q(&["ps", "-q", "-a", "--label", "tier=back"]).is_empty());
    assert_eq!(
        q(&["ps", "-q", "-a", "--state", "exited", "--pod", &web]),
        vec![hello.clone()]
    );
    assert!(q(&["ps", "-q", "--state", "running"]).is_empty());

    // Image status by id, tag and digest agree; removal by tag removes the image; a second remove is fine.
    let image = reg.image_ref("wasm/hello:latest");
    d.pull(&image).unwrap();
    let by_tag = conformance::crictl::inspecti(&d.endpoint(), &image).unwrap();
    let id = by_tag["status"]["id"].as_str().unwrap().to_string();
    let by_id = conformance::crictl::inspecti(&d.endpoint(), &id).unwrap();
    assert_eq!(by_id["status"]["repoTags"], by_tag["status"]["repoTags"]);
    let digest = by_tag["status"]["repoDigests"][0]
        .as_str()
        .unwrap()
        .to_string();
    let by_digest = conformance::crictl::inspecti(&d.endpoint(), &digest).unwrap();
    assert_eq!(by_digest["status"]["id"], id.as_str());
    d.crictl_ok(["rmi", &image]).unwrap();
    assert!(!d.crictl_ok(["images", "-q"]).unwrap().contains(&id[7..19]));
    let fs = d.crictl_json(["imagefsinfo", "-o", "json"]).unwrap();
    assert!(
        fs["status"]["imageFilesystems"][0]["inodesUsed"]["value"]
            .as_str()
            .is_some(),
        "{fs}"
    );
}

/// A uint64 field of crictl's JSON (protojson writes 64-bit integers as strings).
fn u64_at(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.parse().unwrap_or_else(|e| panic!("{s}: {e}")),
        other => other
            .as_u64()
            .unwrap_or_else(|| panic!("not a u64: {other}")),
    }
}

#[test]
fn root_container_and_pod_stats() {
    if skip_unless_root() {
        return;
    }
    let (reg, d) = setup();
    let pod = d.pod_config("stats");
    let pod_id = d.run_pod(&pod).unwrap();
    let id = run(&d, &reg, &pod_id, &pod, "loop", "wasm/loop:latest", |c| c);
    let sample = || {
        let v = d.crictl_json(["stats", "-o", "json", "--id", &id]).unwrap();
        let stats = v["stats"].as_array().unwrap_or_else(|| panic!("{v}"));
        assert_eq!(stats.len(), 1, "{v}");
        let s = stats[0].clone();
        assert_eq!(s["attributes"]["id"], id.as_str(), "{s}");
        assert_eq!(s["attributes"]["metadata"]["name"], "loop", "{s}");
        s
    };
    std::thread::sleep(Duration::from_millis(500));
    let first = sample();
    let cpu1 = u64_at(&first["cpu"]["usageCoreNanoSeconds"]["value"]);
    assert!(cpu1 > 0, "{first}");
    assert!(
        u64_at(&first["memory"]["workingSetBytes"]["value"]) > 0,
        "{first}"
    );
    std::thread::sleep(Duration::from_millis(500));
    let second = sample();
    let cpu2 = u64_at(&second["cpu"]["usageCoreNanoSeconds"]["value"]);
    assert!(cpu2 > cpu1, "cpu did not grow: {cpu1} then {cpu2}");

    // The pod sums its containers and counts the running instance.
    let v = d.crictl_json(["statsp", "-o", "json"]).unwrap();
    let pods = v["stats"].as_array().unwrap_or_else(|| panic!("{v}"));
    let p = pods
        .iter()
        .find(|p| p["attributes"]["id"] == pod_id.as_str())
        .unwrap_or_else(|| panic!("pod {pod_id} missing: {v}"));
    assert_eq!(p["attributes"]["metadata"]["name"], "stats", "{p}");
    assert!(
        u64_at(&p["linux"]["cpu"]["usageCoreNanoSeconds"]["value"]) >= cpu2,
        "{p}"
    );
    assert!(
        u64_at(&p["linux"]["memory"]["workingSetBytes"]["value"]) > 0,
        "{p}"
    );
    assert_eq!(
        u64_at(&p["linux"]["process"]["processCount"]["value"]),
        1,
        "{p}"
    );
    assert_eq!(
        p["linux"]["containers"][0]["attributes"]["id"],
        id.as_str(),
        "{p}"
    );

    // After a stop the CPU total stays and the memory is released.
    d.crictl_ok(["stop", &id]).unwrap();
    let stopped = sample();
    assert!(
        u64_at(&stopped["cpu"]["usageCoreNanoSeconds"]["value"]) >= cpu2,
        "{stopped}"
    );
    assert_eq!(
        u64_at(&stopped["memory"]["workingSetBytes"]["value"]),
        0,
        "{stopped}"
    );

    // ContainerStats of an unknown id is NotFound (crictl only lists, where it is an empty list).
    let cri = Cri::connect(d.socket());
    let mut rtc = cri.runtime.clone();
    let err = cri
        .run(rtc.container_stats(proto::cri::ContainerStatsRequest {
            container_id: "does-not-exist".to_string(),
        }))
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err}");
    let v = d
        .crictl_json(["stats", "-o", "json", "--id", "does-not-exist"])
        .unwrap();
    assert!(v["stats"].as_array().is_none_or(Vec::is_empty), "{v}");
}

/// Read-only mounts are kernel mounts in the pod process's mount namespace: a plain read-only mount leaves a
/// mount below it writable (Linux bind semantics), a recursive one does not, a read-only root refuses writes,
/// and invalid recursive combinations are refused at create.
#[test]
fn root_read_only_mounts_behave_as_on_linux() {
    if skip_unless_root() {
        return;
    }
    let (reg, d) = setup();
    let st = d.crictl_json(["info"]).unwrap();
    assert_eq!(
        st["runtimeHandlers"][0]["features"]["recursive_read_only_mounts"], true,
        "{st}"
    );
    let host = tempfile::tempdir().unwrap();
    let sub = host.path().join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &sub,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let _unmount = Unmount(sub.clone());

    // The pod's mount namespace is a copy of the node's when the pod starts (volumes are mounted before the
    // kubelet creates the sandbox); this node's mounts are private, so later mounts would not reach it.
    let pod = d.pod_config("readonly");
    let pod_id = d.run_pod(&pod).unwrap();
    let id = run(&d, &reg, &pod_id, &pod, "probe", "wasm/probe:latest", |c| {
        c.env("PROBE_DIRS", "/ro:/ro/sub:/rro:/rro/sub:/")
            .mount("/ro", host.path(), true)
            .mount_rro("/rro", host.path())
            .readonly_rootfs()
    });
    let s = wait_exited(&d, &id);
    let out = d.crictl_ok(["logs", &id]).unwrap();
    assert_eq!(s["status"]["exitCode"], 0, "{s}\n{out}");
    // The kernel refuses the writes with EROFS, and the guest sees EROFS (wasmtime-wasi 48 alone would say EIO:
    // podsandbox's p1_rofs tells the two apart).
    for dir in ["/ro", "/rro", "/rro/sub", "/"] {
        assert_eq!(
            write_result(&out, dir),
            Some("Read-only file system"),
            "write to {dir} must fail: {out}"
        );
    }
    assert!(
        out.contains("write /ro/sub: ok"),
        "a mount below a non-recursive read-only mount stays writable: {out}"
    );
    // The pod process's mounts stay in its own namespace.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&format!("/pods/{pod_id}/mnt/")),
        "{mounts}"
    );

    // Masked and read-only paths: /etc/hostname reads as empty (it is /dev/null now), /etc refuses writes while
    // the root stays writable; a path the image does not have is skipped, as runc does.
    let id = run(&d, &reg, &pod_id, &pod, "paths", "wasm/probe:latest", |c| {
        c.env("PROBE_DIRS", "/etc:/")
            .masked_path("/etc/hostname")
            .masked_path("/no/such/path")
            .readonly_path("/etc")
    });
    let s = wait_exited(&d, &id);
    let out = d.crictl_ok(["logs", &id]).unwrap();
    assert_eq!(s["status"]["exitCode"], 0, "{s}\n{out}");
    assert_eq!(
        write_result(&out, "/etc"),
        Some("Read-only file system"),
        "{out}"
    );
    assert!(out.contains("write /: ok"), "{out}");
    assert!(
        out.lines().any(|l| l.trim_end() == "hostname:"),
        "masked /etc/hostname must read as empty: {out}"
    );

    // recursive_read_only without readonly, or with propagation, is refused with InvalidArgument.
    let image = reg.image_ref("wasm/probe:latest");
    let bad =
        conformance::ContainerConfig::new("bad", &image).mount_rro_writable("/x", host.path());
    let e = d.create_container(&pod_id, &bad, &pod).unwrap_err();
    assert!(
        format!("{e:#}").contains("recursive_read_only needs readonly"),
        "{e:#}"
    );
}

/// What the probe fixture reported for its write into `dir`: "ok" or the error text.
fn write_result<'a>(out: &'a str, dir: &str) -> Option<&'a str> {
    let prefix = format!("write {dir}: ");
    out.lines().find_map(|l| l.strip_prefix(&prefix))
}

/// Whether the probe fixture reported a failed write into `dir`.
fn write_refused(out: &str, dir: &str) -> bool {
    let prefix = format!("write {dir}: ");
    out.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .is_some_and(|result| result != "ok")
}

/// StopPodSandbox ends the pod process by asking it (its Shutdown ends the daemon's event stream, so its
/// graceful shutdown completes) instead of waiting out the one-second kill timer: the pod process logs its own
/// exit, which a killed one never does.
#[test]
fn root_stopped_pod_process_exits_by_itself() {
    if skip_unless_root() {
        return;
    }
    let d = Daemon::start(DaemonOpts::default()).unwrap();
    let pod = d.pod_config("stop-fast");
    let pod_id = d.run_pod(&pod).unwrap();
    d.crictl_ok(["stopp", &pod_id]).unwrap();
    let log =
        std::fs::read_to_string(d.state().join("pods").join(&pod_id).join("pod.log")).unwrap();
    assert!(
        log.contains("pod process exiting"),
        "the pod process was killed, not shut down:\n{log}"
    );
}
