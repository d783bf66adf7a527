//! Air-gapped nodes: `wasm-cri image export` writes an OCI image layout (tar or directory) while
//! the daemon runs, `wasm-cri image import` loads one into a stopped daemon's store, and the
//! imported image behaves like a pulled one (listed, inspected, run with crictl, removed). The
//! layouts are also exchanged with skopeo, in both directions, and one is built by the test itself.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use conformance::crictl::{container_state, inspect, inspecti, wait_until};
use conformance::daemon::wasm_cri_bin;
use conformance::fixtures::{fixture_path, fixtures_dir};
use conformance::image::{build_image, sha256_digest};
use conformance::{ContainerConfig, Daemon, DaemonOpts, ImageSpec, Registry, require_root};
use serde_json::json;

use crate::image_store::check_store;

/// `wasm-cri image <args> --root <daemon root>`.
fn image_cli(d: &Daemon, args: &[&str]) -> Output {
    Command::new(wasm_cri_bin())
        .arg("image")
        .args(args)
        .arg("--root")
        .arg(d.root())
        .output()
        .unwrap()
}

fn image_cli_ok(d: &Daemon, args: &[&str]) -> String {
    let out = image_cli(d, args);
    assert!(
        out.status.success(),
        "wasm-cri image {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn hello_spec() -> ImageSpec {
    ImageSpec::single(
        fixture_path(fixtures_dir().unwrap(), "hello"),
        "/hello.wasm",
    )
}

/// Runs `image` in a fresh pod and checks it prints the hello fixture's greeting.
fn run_hello(d: &Daemon, image: &str, name: &str) {
    let pod = d.pod_config(name);
    let pod_id = d.run_pod(&pod).unwrap();
    let container = ContainerConfig::new("hello", image);
    let id = d.create_container(&pod_id, &container, &pod).unwrap();
    d.start_container(&id).unwrap();
    wait_until("container exits", Duration::from_secs(60), || {
        Ok(container_state(&d.endpoint(), &id)? == "CONTAINER_EXITED")
    })
    .unwrap();
    assert_eq!(
        inspect(&d.endpoint(), &id).unwrap()["status"]["exitCode"],
        0
    );
    let logs = d.crictl_ok(["logs", &id]).unwrap();
    assert!(logs.contains("hello from wasm"), "{logs:?}");
    d.crictl_ok(["stopp", &pod_id]).unwrap();
    d.crictl_ok(["rmp", &pod_id]).unwrap();
}

fn image_id(d: &Daemon, image: &str) -> String {
    inspecti(&d.endpoint(), image).unwrap()["status"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// `tar -tf`: the archive is an ordinary tar that GNU tar lists.
fn tar_names(path: &Path) -> Vec<String> {
    let out = Command::new("tar").arg("-tf").arg(path).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn root_export_remove_import_and_run() {
    require_root!();
    let reg = Registry::start().unwrap();
    reg.push("wasm/hello:1", &hello_spec()).unwrap();
    let reference = reg.image_ref("wasm/hello:1");
    let mut d = Daemon::start(DaemonOpts::with_registry(reg.addr())).unwrap();
    d.pull(&reference).unwrap();
    let pulled = inspecti(&d.endpoint(), &reference).unwrap()["status"].clone();
    let out_dir = tempfile::tempdir().unwrap();

    // Export runs beside the daemon.
    let tar = out_dir.path().join("hello.tar");
    let said = image_cli_ok(&d, &["export", &reference, tar.to_str().unwrap()]);
    assert!(said.contains(pulled["id"].as_str().unwrap()), "{said}");
    let listed = tar_names(&tar);
    for name in ["oci-layout", "index.json"] {
        assert!(listed.contains(&name.to_owned()), "{listed:?}");
    }
    assert_eq!(
        listed
            .iter()
            .filter(|n| n.starts_with("blobs/sha256/") && n.len() > 13)
            .count(),
        3,
        "{listed:?}"
    );
    let layout_dir = out_dir.path().join("hello-layout");
    image_cli_ok(
        &d,
        &[
            "export",
            pulled["id"].as_str().unwrap(),
            layout_dir.to_str().unwrap(),
        ],
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout_dir.join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["manifests"][0]["annotations"],
        json!({"io.containerd.image.name": reference, "org.opencontainers.image.ref.name": "1"})
    );

    d.crictl_ok(["rmi", &reference]).unwrap();
    // Import while the daemon owns the store: refused, saying what to do.
    let out = image_cli(&d, &["import", tar.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("in use by the running wasm-cri daemon") && err.contains("stop the daemon"),
        "{err}"
    );

    d.stop().unwrap();
    let said = image_cli_ok(&d, &["import", tar.to_str().unwrap()]);
    assert!(said.contains(&reference), "{said}");
    d.restart().unwrap();
    let imported = inspecti(&d.endpoint(), &reference).unwrap()["status"].clone();
    for key in ["id", "repoTags", "repoDigests", "size", "uid", "username"] {
        assert_eq!(imported[key], pulled[key], "{key}");
    }
    run_hello(&d, &reference, "imported");
    check_store(&d.root());
    // Removed like a pulled image, and the directory form imports too.
    d.crictl_ok(["rmi", &reference]).unwrap();
    d.stop().unwrap();
    image_cli_ok(&d, &["import", layout_dir.to_str().unwrap()]);
    d.restart().unwrap();
    assert_eq!(image_id(&d, &reference), pulled["id"].as_str().unwrap());
    check_store(&d.root());
}

/// Writes an OCI layout of `spec` named `name` (full reference in `ref.name`, as buildah and
/// oras write it) by hand; returns the layout dir and the config digest (the image id).
fn build_layout(dir: &Path, spec: &ImageSpec, name: &str) -> (PathBuf, String) {
    let built = build_image(spec).unwrap();
    let layout = dir.join("layout");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let digest = sha256_digest(bytes);
        std::fs::write(blobs.join(&digest[7..]), bytes).unwrap();
        json!({"digest": digest, "size": bytes.len()})
    };
    let mut config = put(&built.config);
    config["mediaType"] = json!("application/vnd.oci.image.config.v1+json");
    let mut layer = put(&built.layer);
    layer["mediaType"] = json!("application/vnd.oci.image.layer.v1.tar+gzip");
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config,
        "layers": [layer],
    }))
    .unwrap();
    let mut entry = put(&manifest);
    entry["mediaType"] = json!("application/vnd.oci.image.manifest.v1+json");
    entry["annotations"] = json!({"org.opencontainers.image.ref.name": name});
    std::fs::write(
        layout.join("index.json"),
        json!({"schemaVersion": 2, "manifests": [entry]}).to_string(),
    )
    .unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    (layout, config["digest"].as_str().unwrap().to_owned())
}

#[test]
fn root_a_layout_built_by_hand_imports_and_runs() {
    require_root!();
    let dir = tempfile::tempdir().unwrap();
    let (layout, config) = build_layout(dir.path(), &hello_spec(), "example.com/edge/hello:2");
    let mut d = Daemon::start(DaemonOpts::default()).unwrap();
    d.stop().unwrap();
    // A bare tag would name no repository: --name gives one.
    let said = image_cli_ok(
        &d,
        &["import", layout.to_str().unwrap(), "--name", "edge/hello:3"],
    );
    assert!(said.contains("docker.io/edge/hello:3"), "{said}");
    image_cli_ok(&d, &["import", layout.to_str().unwrap()]);
    d.restart().unwrap();
    let status = inspecti(&d.endpoint(), "example.com/edge/hello:2").unwrap()["status"].clone();
    assert_eq!(status["id"], config);
    let mut tags: Vec<&str> = status["repoTags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    tags.sort();
    assert_eq!(tags, ["docker.io/edge/hello:3", "example.com/edge/hello:2"]);
    run_hello(&d, "edge/hello:3", "handmade");
    check_store(&d.root());
}

fn skopeo() -> Option<PathBuf> {
    let path = PathBuf::from("/usr/bin/skopeo");
    if path.exists() {
        return Some(path);
    }
    eprintln!("skipping: skopeo is not installed (scripts/install-deps installs it)");
    None
}

fn run_skopeo(bin: &Path, args: &[&str]) {
    let out = Command::new(bin)
        .arg("--insecure-policy")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn skopeo_reads_our_archives_and_we_read_skopeos() {
    let Some(skopeo) = skopeo() else { return };
    let reg = Registry::start().unwrap();
    reg.push("wasm/hello:1", &hello_spec()).unwrap();
    let reference = reg.image_ref("wasm/hello:1");
    let mut d = Daemon::start(DaemonOpts::with_registry(reg.addr())).unwrap();
    d.pull(&reference).unwrap();
    let id = image_id(&d, &reference);
    let dir = tempfile::tempdir().unwrap();

    // Ours → skopeo → the registry under another name → pulled: the same image.
    let ours = dir.path().join("ours.tar");
    image_cli_ok(&d, &["export", &reference, ours.to_str().unwrap()]);
    let copied = reg.image_ref("wasm/copied:1");
    run_skopeo(
        &skopeo,
        &[
            "copy",
            "--dest-tls-verify=false",
            &format!("oci-archive:{}:1", ours.display()),
            &format!("docker://{copied}"),
        ],
    );
    d.pull(&copied).unwrap();
    assert_eq!(image_id(&d, &copied), id);

    // skopeo's oci-archive (ref.name is the bare tag "v1") → imported with --name.
    let theirs = dir.path().join("theirs.tar");
    run_skopeo(
        &skopeo,
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{reference}"),
            &format!("oci-archive:{}:v1", theirs.display()),
        ],
    );
    // One image under two tags: removing it by one removes both (crictl, given both, would race itself).
    d.crictl_ok(["rmi", &reference]).unwrap();
    assert!(d.crictl_ok(["images", "-q"]).unwrap().trim().is_empty());
    d.stop().unwrap();
    let out = image_cli(&d, &["import", theirs.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("bare tag \"v1\""),
        "{err}"
    );
    image_cli_ok(
        &d,
        &[
            "import",
            theirs.to_str().unwrap(),
            "--name",
            "airgap/hello:v1",
        ],
    );
    d.restart().unwrap();
    assert_eq!(image_id(&d, "airgap/hello:v1"), id);
    check_store(&d.root());
}
