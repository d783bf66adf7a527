//! Who a container runs as and what its `/proc` shows, through the real binary and crictl: the CRI identity
//! (run_as_user/group/username, supplemental groups) held by the thread that runs the instance, checked by
//! the toolbox's `id` and by a file the container creates; pod sysctls in the pod's own IPC namespace; the
//! pod's or the node's System V shared memory; and a `/proc` that does not reach into the pod process.

use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::Duration;

use conformance::crictl::{container_state, wait_until};
use conformance::critest_images;
use conformance::fixtures::{fixture_path, fixtures_dir};
use conformance::{ContainerConfig, Daemon, DaemonOpts, PodConfig, Registry, skip_unless_root};

const BUSYBOX: &str = "e2e-test-images/busybox:1.29-2";

fn setup() -> (Registry, Daemon, String) {
    let registry = Registry::start().unwrap();
    let (addr, toolbox) = (
        registry.addr().to_string(),
        fixture_path(fixtures_dir().unwrap(), "toolbox"),
    );
    conformance::block_on(
        async move { critest_images::push_critest_images(&addr, &toolbox).await },
    )
    .unwrap();
    let daemon = Daemon::start(DaemonOpts::with_registry(registry.addr())).unwrap();
    let image = registry.image_ref(BUSYBOX);
    daemon.pull(&image).unwrap();
    (registry, daemon, image)
}

/// Creates and starts a `sleep` container configured by `f`; returns its id once running.
fn running(
    d: &Daemon,
    pod_id: &str,
    pod: &PodConfig,
    name: &str,
    image: &str,
    f: impl FnOnce(ContainerConfig) -> ContainerConfig,
) -> String {
    let c = f(ContainerConfig::new(name, image).command(["sleep", "1000"]));
    let id = d.create_container(pod_id, &c, pod).unwrap();
    d.start_container(&id).unwrap();
    wait_until("the container runs", Duration::from_secs(60), || {
        Ok(container_state(&d.endpoint(), &id)? == "CONTAINER_RUNNING")
    })
    .unwrap();
    id
}

fn exec(d: &Daemon, id: &str, cmd: &[&str]) -> String {
    let mut args = vec!["exec", "-s", id];
    args.extend_from_slice(cmd);
    d.crictl_ok(args).unwrap().trim().to_string()
}

#[test]
fn root_containers_run_as_their_cri_identity() {
    if skip_unless_root() {
        return;
    }
    let (_reg, d, image) = setup();
    let pod = d.pod_config("identity");
    let pod_id = d.run_pod(&pod).unwrap();
    let user = running(&d, &pod_id, &pod, "user", &image, |c| {
        c.run_as_user(1001)
            .run_as_group(1002)
            .supplemental_groups(&[1234, 5678])
    });
    let nobody = running(&d, &pod_id, &pod, "nobody", &image, |c| {
        c.run_as_username("nobody")
    });
    let root = running(&d, &pod_id, &pod, "root", &image, |c| c);
    let powerless = running(&d, &pod_id, &pod, "powerless", &image, |c| {
        c.capabilities(&[], &["ALL"])
    });
    let mighty = running(&d, &pod_id, &pod, "mighty", &image, |c| {
        c.capabilities(&["ALL"], &[])
    });

    assert_eq!(exec(&d, &user, &["id", "-u"]), "1001");
    assert_eq!(
        exec(&d, &user, &["sh", "-c", "echo $(id -u):$(id -g)"]),
        "1001:1002"
    );
    let groups = exec(&d, &user, &["id", "-G"]);
    for g in ["1002", "1234", "5678"] {
        assert!(groups.split(' ').any(|x| x == g), "{g} not in {groups:?}");
    }
    assert_eq!(exec(&d, &nobody, &["id", "-nu"]), "nobody");
    assert_eq!(exec(&d, &root, &["id", "-u"]), "0");

    // The identity is real: a file the guest creates belongs to it, and root-only files stay closed to it.
    exec(&d, &user, &["touch", "/tmp/made-by-1001"]);
    let inspect = d.crictl_json(["inspect", &user]).unwrap();
    let rootfs = d.root().join("containers").join(&user).join("rootfs");
    let meta = std::fs::metadata(rootfs.join("tmp/made-by-1001"))
        .unwrap_or_else(|e| panic!("file not found under {}: {e}; {inspect}", rootfs.display()));
    assert_eq!((meta.uid(), meta.gid()), (1001, 1002));
    // Each container has its own root copy: put a root-only file in both.
    for c in [&user, &root] {
        let file = d.root().join("containers").join(c).join("rootfs/secret");
        std::fs::write(&file, "root only").unwrap();
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
    }
    let denied = d.crictl(["exec", "-s", &user, "cat", "/secret"]).unwrap();
    assert!(!denied.status.success(), "1001 read a 0600 root file");
    assert!(
        String::from_utf8_lossy(&denied.stdout).contains("Permission denied")
            || String::from_utf8_lossy(&denied.stderr).contains("Permission denied"),
        "{denied:?}"
    );
    assert_eq!(exec(&d, &root, &["cat", "/secret"]), "root only");

    // Capabilities are the thread's too: root without CAP_DAC_OVERRIDE cannot read another user's 0600 file.
    let status = exec(&d, &powerless, &["cat", "/proc/self/status"]);
    assert!(status.contains("CapBnd:\t0000000000000000"), "{status}");
    assert!(status.contains("Uid:\t0\t0\t0\t0"), "{status}");
    // ALL is all the pod process holds (this machine's bounding set may lack some).
    let held = std::fs::read_to_string("/proc/self/status").unwrap();
    let held = held
        .lines()
        .find(|l| l.starts_with("CapBnd:"))
        .unwrap()
        .to_string();
    assert_eq!(
        exec(&d, &mighty, &["grep", "CapBnd", "/proc/self/status"]),
        held
    );
    let default_caps = exec(&d, &root, &["grep", "CapEff", "/proc/self/status"]);
    assert_eq!(
        default_caps, "CapEff:\t00000000a80425fb",
        "containerd's default set"
    );
    for c in [&root, &powerless] {
        let file = d.root().join("containers").join(c).join("rootfs/theirs");
        std::fs::write(&file, "1001 only").unwrap();
        std::os::unix::fs::chown(&file, Some(1001), Some(1001)).unwrap();
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
    }
    assert_eq!(exec(&d, &root, &["cat", "/theirs"]), "1001 only");
    let denied = d
        .crictl(["exec", "-s", &powerless, "cat", "/theirs"])
        .unwrap();
    assert!(
        !denied.status.success(),
        "root without capabilities read a 0600 file of uid 1001"
    );

    // The guest's /proc is a view: no pod process memory, environment or node kernel files in it.
    for path in [
        "/proc/1/environ",
        "/proc/kcore",
        "/proc/self/mem",
        "/proc/self/environ",
    ] {
        let o = d.crictl(["exec", "-s", &root, "cat", path]).unwrap();
        assert!(!o.status.success(), "{path} readable in the guest's /proc");
    }
    // The pod's PID namespace: its pid 1 is the pod process (as the pause process is in a Linux pod).
    let one = exec(&d, &root, &["cat", "/proc/1/cmdline"]);
    assert!(one.contains("pod"), "{one:?}");
    assert_eq!(exec(&d, &root, &["cat", "/proc/1/comm"]), "wasm-cri");
    // And it is read-only.
    let o = d
        .crictl([
            "exec",
            "-s",
            &root,
            "sh",
            "-c",
            "echo 1 > /proc/sys/kernel/shm_rmid_forced",
        ])
        .unwrap();
    assert!(!o.status.success(), "/proc/sys written from a guest");
}

#[test]
fn root_pod_sysctls_and_ipc_namespaces() {
    if skip_unless_root() {
        return;
    }
    let (_reg, d, image) = setup();
    let pod = d
        .pod_config("sysctls")
        .sysctl("kernel.shm_rmid_forced", "1")
        .sysctl("fs.mqueue.msg_max", "100");
    let pod_id = d.run_pod(&pod).unwrap();
    let c = running(&d, &pod_id, &pod, "sysctls", &image, |c| c);
    assert_eq!(
        exec(&d, &c, &["cat", "/proc/sys/kernel/shm_rmid_forced"]),
        "1"
    );
    assert_eq!(exec(&d, &c, &["cat", "/proc/sys/fs/mqueue/msg_max"]), "100");
    // The node's own values did not change.
    let node = std::fs::read_to_string("/proc/sys/fs/mqueue/msg_max").unwrap();
    assert_ne!(node.trim(), "100", "the pod's sysctl leaked to the node");

    // A sysctl that is not namespaced is refused before anything starts.
    let bad = d.pod_config("bad-sysctl").sysctl("vm.swappiness", "1");
    let err = d.run_pod(&bad).unwrap_err().to_string();
    assert!(
        err.contains("vm.swappiness") && err.contains("not namespaced"),
        "{err}"
    );

    // System V shared memory: a node segment is seen by hostIPC pods only.
    let out = Command::new("ipcmk").args(["-M", "4096"]).output().unwrap();
    assert!(out.status.success(), "ipcmk: {out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let seg = text
        .trim()
        .trim_start_matches("Shared memory id: ")
        .to_string();
    let cleanup = scopeguard(seg.clone());
    let own = exec(&d, &c, &["ipcs", "-m"]);
    assert!(
        !own.contains(&seg),
        "pod IPC namespace sees node segment {seg}: {own}"
    );
    let host_pod = d.pod_config("host-ipc").host_ipc();
    let host_pod_id = d.run_pod(&host_pod).unwrap();
    let h = running(&d, &host_pod_id, &host_pod, "host-ipc", &image, |c| c);
    let host = exec(&d, &h, &["ipcs", "-m"]);
    assert!(
        host.contains(&seg),
        "hostIPC pod does not see node segment {seg}: {host}"
    );
    drop(cleanup);
}

/// Removes the shared memory segment when the test ends, passed or not.
fn scopeguard(id: String) -> impl Drop {
    struct Guard(String);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = Command::new("ipcrm").args(["-m", &self.0]).status();
        }
    }
    Guard(id)
}
