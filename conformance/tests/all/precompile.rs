//! The precompile cache end to end: a pull compiles the image's Wasm into `<root>/images/precompiled/`,
//! pod processes map that artifact (their log says so) and run it correctly, a damaged artifact is compiled
//! again by the daemon, one the pod process refuses is compiled by the pod process, an artifact of another
//! engine key is swept at restart, and removing the image removes its artifact. Also: an image of several
//! Wasm layers and no Entrypoint gets a CreateContainer error naming its Wasm files.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use conformance::artifact::{Blob, push_blobs_blocking};
use conformance::big_module::{self, OK_LINE};
use conformance::crictl::{container_state, inspect, wait_until};
use conformance::image::sha256_digest;
use conformance::{ContainerConfig, Daemon, DaemonOpts, ImageSpec, Registry, require_root};

/// About 1 MB of Wasm: big enough that a compile is real work, small enough for a debug build.
const FUNCTIONS: usize = 3000;

const LOADED: &str = "program loaded from precompiled artifact";
const POD_COMPILES: &str = "cannot use precompiled artifact; compiling the program";
const DAEMON_RECOMPILES: &str = "precompiled artifact is unusable; compiling again";

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// The one engine-key directory of the cache.
fn key_dir(d: &Daemon) -> PathBuf {
    let cache = d.root().join("images/precompiled");
    let dirs: Vec<PathBuf> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap() != "images")
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs.into_iter().next().unwrap()
}

/// Runs the big module in a new pod; returns the pod process's log once the container exited with the
/// right output.
fn run_big(d: &Daemon, image: &str, name: &str) -> String {
    let pod = d.pod_config(name);
    let pod_id = d.run_pod(&pod).unwrap();
    let c = ContainerConfig::new("big", image);
    let id = d.create_container(&pod_id, &c, &pod).unwrap();
    d.start_container(&id).unwrap();
    wait_until("big module exits", Duration::from_secs(120), || {
        Ok(container_state(&d.endpoint(), &id)? == "CONTAINER_EXITED")
    })
    .unwrap();
    let status = inspect(&d.endpoint(), &id).unwrap();
    assert_eq!(status["status"]["exitCode"], 0, "{status}");
    let logs = d.crictl_ok(["logs", &id]).unwrap();
    assert!(logs.contains(OK_LINE), "{logs}");
    let pod_log = d.state().join("pods").join(&pod_id).join("pod.log");
    let text = std::fs::read_to_string(&pod_log).unwrap();
    d.crictl_ok(["stopp", &pod_id]).unwrap();
    d.crictl_ok(["rmp", &pod_id]).unwrap();
    text
}

#[test]
fn root_precompile_cache_lifecycle() {
    require_root!();
    let reg = Registry::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let wasm = big_module::generate(FUNCTIONS).unwrap();
    let local = dir.path().join("big.wasm");
    std::fs::write(&local, &wasm).unwrap();
    reg.push("wasm/big:1", &ImageSpec::single(&local, "/big.wasm"))
        .unwrap();
    let image = reg.image_ref("wasm/big:1");
    let wasm_hex = sha256_digest(&wasm)
        .strip_prefix("sha256:")
        .unwrap()
        .to_owned();

    let mut d = Daemon::start(DaemonOpts::with_registry(reg.addr())).unwrap();
    d.pull(&image).unwrap();
    let cache = d.root().join("images/precompiled");
    let key = key_dir(&d);
    let artifact = key.join(format!("{wasm_hex}.cwasm"));
    assert!(
        artifact.is_file(),
        "no artifact after the pull: {}",
        d.log_tail(30)
    );
    assert_eq!(mode(&artifact), 0o600);
    assert_eq!(mode(&key), 0o700);
    assert_eq!(mode(&cache), 0o700);
    let size = std::fs::metadata(&artifact).unwrap().len();
    let image_id = d.crictl_json(["inspecti", &image]).unwrap()["status"]["id"]
        .as_str()
        .unwrap()
        .strip_prefix("sha256:")
        .unwrap()
        .to_owned();
    let index = cache.join("images").join(format!("{image_id}.json"));
    assert!(index.is_file());

    // Mapped by the pod process, not compiled, and the output is right.
    let log = run_big(&d, &image, "pre-1");
    assert!(
        log.contains(LOADED) && log.contains(&*artifact.to_string_lossy()),
        "{log}"
    );
    assert!(!log.contains(POD_COMPILES), "{log}");

    // A truncated artifact: the daemon notices at CreateContainer and compiles it again.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&artifact)
        .unwrap()
        .set_len(size / 2)
        .unwrap();
    let log = run_big(&d, &image, "pre-2");
    assert!(d.log().contains(DAEMON_RECOMPILES), "{}", d.log_tail(30));
    assert_eq!(std::fs::metadata(&artifact).unwrap().len(), size);
    assert!(log.contains(LOADED), "{log}");

    // An artifact others could have written: its header is fine, so the daemon passes it on, but the pod
    // process refuses to map it and compiles the Wasm itself; the container runs the same.
    std::fs::set_permissions(&artifact, std::fs::Permissions::from_mode(0o666)).unwrap();
    let log = run_big(&d, &image, "pre-3");
    assert!(
        log.contains(POD_COMPILES) && log.contains("writable"),
        "{log}"
    );
    assert!(!log.contains(LOADED), "{log}");
    std::fs::set_permissions(&artifact, std::fs::Permissions::from_mode(0o600)).unwrap();

    // Another engine's artifacts (a wasmtime upgrade, a config change) are swept at start-up.
    let stale = cache.join("0123456789abcdef");
    std::fs::create_dir(&stale).unwrap();
    std::fs::write(stale.join(format!("{wasm_hex}.cwasm")), b"old").unwrap();
    d.restart().unwrap();
    assert!(!stale.exists());
    assert!(artifact.is_file());
    let log = run_big(&d, &image, "pre-4");
    assert!(log.contains(LOADED), "{log}");

    // The image takes its artifact and index with it.
    d.crictl_ok(["rmi", &image]).unwrap();
    assert!(!artifact.exists());
    assert!(!index.exists());
}

#[test]
fn root_precompile_off_leaves_compiling_to_the_pod() {
    require_root!();
    let reg = Registry::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("big.wasm");
    std::fs::write(&local, big_module::generate(200).unwrap()).unwrap();
    reg.push("wasm/big-small:1", &ImageSpec::single(&local, "/big.wasm"))
        .unwrap();
    let image = reg.image_ref("wasm/big-small:1");
    let d = Daemon::start(
        DaemonOpts::with_registry(reg.addr())
            .arg("--precompile")
            .arg("false"),
    )
    .unwrap();
    d.pull(&image).unwrap();
    let cache = d.root().join("images/precompiled");
    let entries: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        entries,
        ["images"],
        "nothing compiled with --precompile false"
    );
    let log = run_big(&d, &image, "nopre");
    assert!(!log.contains(LOADED), "{log}");
}

/// An image of several raw Wasm layers has no Entrypoint: CreateContainer without a command names its Wasm
/// files and says to set the command; with one, it runs. Both layers were precompiled at the pull.
#[test]
fn root_several_wasm_layers_need_a_command() {
    require_root!();
    let reg = Registry::start().unwrap();
    let layer = |title: &str, functions: usize| Blob {
        media_type: "application/vnd.wasm.content.layer.v1+wasm".into(),
        data: big_module::generate(functions).unwrap(),
        title: Some(title.into()),
    };
    push_blobs_blocking(
        reg.addr(),
        "wasm/two-layers:1",
        Blob {
            media_type: "application/vnd.oci.image.config.v1+json".into(),
            data: br#"{"architecture":"wasm","os":"wasip1","config":{}}"#.to_vec(),
            title: None,
        },
        vec![layer("a.wasm", 20), layer("b.wasm", 30)],
    )
    .unwrap();
    let image = reg.image_ref("wasm/two-layers:1");
    let d = Daemon::start(DaemonOpts::with_registry(reg.addr())).unwrap();
    d.pull(&image).unwrap();
    let artifacts = std::fs::read_dir(key_dir(&d)).unwrap().count();
    assert_eq!(artifacts, 2);

    let pod = d.pod_config("two-layers");
    let pod_id = d.run_pod(&pod).unwrap();
    let err = d
        .create_container(&pod_id, &ContainerConfig::new("none", &image), &pod)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("several Wasm files (/a.wasm, /b.wasm)")
            && err.contains("set the container's command to the one to run"),
        "{err}"
    );
    let c = ContainerConfig::new("b", &image).command(["/b.wasm"]);
    let id = d.create_container(&pod_id, &c, &pod).unwrap();
    d.start_container(&id).unwrap();
    wait_until("b.wasm exits", Duration::from_secs(60), || {
        Ok(container_state(&d.endpoint(), &id)? == "CONTAINER_EXITED")
    })
    .unwrap();
    assert!(d.crictl_ok(["logs", &id]).unwrap().contains(OK_LINE));
}
