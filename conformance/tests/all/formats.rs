//! Image formats and registry access end to end: every Wasm image convention pulls and runs, a
//! mirror serves a made-up registry under the requested name, a basic-auth registry takes
//! credentials from the request or the config file, and a pull stops at the caller's deadline.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use conformance::artifact::{Blob, WasmFormat, push_blobs_blocking, push_wasm_blocking};
use conformance::crictl::{container_state, inspect, inspecti, wait_until};
use conformance::fixtures::{fixture_path, fixtures_dir};
use conformance::{ContainerConfig, Daemon, DaemonOpts, Registry, require_root};
use oci_client::secrets::RegistryAuth;
use proto::cri::{ImageSpec, ListImagesRequest, PullImageRequest};

use crate::client::Cri;

/// A daemon started with `--config <dir>/config.toml` holding `config`.
fn daemon_with_config(registry: &Registry, config: &str) -> (tempfile::TempDir, Daemon) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, config).unwrap();
    let opts = DaemonOpts::with_registry(registry.addr())
        .arg("--config")
        .arg(path.to_str().unwrap());
    (dir, Daemon::start(opts).unwrap())
}

fn hello_files() -> (PathBuf, PathBuf) {
    let dir = fixtures_dir().unwrap();
    (
        fixture_path(dir, "hello"),
        fixture_path(dir, "hello-component"),
    )
}

fn repo_tags(d: &Daemon) -> Vec<String> {
    let v = d.crictl_json(["images", "-o", "json"]).unwrap();
    v["images"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["repoTags"].as_array().cloned().unwrap_or_default())
        .map(|t| t.as_str().unwrap().to_owned())
        .collect()
}

fn crictl_err(d: &Daemon, args: &[&str]) -> String {
    let out = d.crictl(args).unwrap();
    assert!(!out.status.success(), "crictl {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn root_every_wasm_image_convention_pulls_and_runs() {
    require_root!();
    let reg = Registry::start().unwrap();
    let (module, component) = hello_files();
    let images: Vec<(&str, WasmFormat, &Path)> = vec![
        ("wasm/runwasi:1", WasmFormat::Runwasi, component.as_path()),
        (
            "wasm/runwasi-module:1",
            WasmFormat::Runwasi,
            module.as_path(),
        ),
        ("wasm/cncf:1", WasmFormat::CncfArtifact, module.as_path()),
        (
            "wasm/wasm-to-oci:1",
            WasmFormat::WasmToOci,
            module.as_path(),
        ),
    ];
    for (image, format, file) in &images {
        push_wasm_blocking(reg.addr(), image, *format, file, &RegistryAuth::Anonymous).unwrap();
    }
    let d = Daemon::start(DaemonOpts::with_registry(reg.addr())).unwrap();
    let pod = d.pod_config("formats");
    let pod_id = d.run_pod(&pod).unwrap();
    for (i, (image, format, _)) in images.iter().enumerate() {
        let reference = reg.image_ref(image);
        d.pull(&reference).unwrap();
        let info = inspecti(&d.endpoint(), &reference).unwrap();
        let name = format!("c{i}");
        let container = ContainerConfig::new(&name, &reference);
        let id = d.create_container(&pod_id, &container, &pod).unwrap();
        d.start_container(&id).unwrap();
        wait_until("container exits", Duration::from_secs(60), || {
            Ok(container_state(&d.endpoint(), &id)? == "CONTAINER_EXITED")
        })
        .unwrap_or_else(|e| panic!("{image}: {e:#}\n{}", d.log_tail(40)));
        let status = inspect(&d.endpoint(), &id).unwrap();
        assert_eq!(
            status["status"]["exitCode"], 0,
            "{image} ({format:?}): {status}"
        );
        let logs = d.crictl_ok(["logs", &id]).unwrap();
        assert!(
            logs.contains("hello from wasm"),
            "{image} ({format:?}): {logs:?} {info}"
        );
    }
    d.crictl_ok(["stopp", &pod_id]).unwrap();
    d.crictl_ok(["rmp", &pod_id]).unwrap();
}

#[test]
fn unrecognised_artifacts_are_refused_naming_their_media_types() {
    let reg = Registry::start().unwrap();
    let (module, _) = hello_files();
    push_blobs_blocking(
        reg.addr(),
        "wasm/spin-like:1",
        Blob {
            media_type: "application/vnd.wasm.config.v1+json".into(),
            data: b"{}".to_vec(),
            title: None,
        },
        vec![
            Blob {
                media_type: "application/vnd.wasm.content.layer.v1+wasm".into(),
                data: std::fs::read(&module).unwrap(),
                title: None,
            },
            Blob {
                media_type: "application/vnd.wasm.content.layer.v1+data".into(),
                data: b"static asset".to_vec(),
                title: None,
            },
        ],
    )
    .unwrap();
    let d = Daemon::start(DaemonOpts::with_registry(reg.addr())).unwrap();
    let err = crictl_err(&d, &["pull", &reg.image_ref("wasm/spin-like:1")]);
    assert!(
        err.contains(
            "application/vnd.wasm.content.layer.v1+wasm, application/vnd.wasm.content.layer.v1+data"
        ),
        "{err}"
    );
    assert!(repo_tags(&d).is_empty());
}

#[test]
fn a_mirror_serves_a_made_up_registry_under_the_requested_name() {
    let reg = Registry::start().unwrap();
    let (module, _) = hello_files();
    push_wasm_blocking(
        reg.addr(),
        "wasm/hello:latest",
        WasmFormat::CncfArtifact,
        &module,
        &RegistryAuth::Anonymous,
    )
    .unwrap();
    let dead = conformance::registry::free_port().unwrap();
    let (_dir, d) = daemon_with_config(
        &reg,
        &format!(
            "[registries.\"example.invalid\"]\n\
             mirrors = [\"http://127.0.0.1:{dead}\", \"http://{}\"]\n\
             fallback_to_origin = false\n",
            reg.addr()
        ),
    );
    d.pull("example.invalid/wasm/hello:latest").unwrap();
    assert_eq!(repo_tags(&d), ["example.invalid/wasm/hello:latest"]);
    let image = inspecti(&d.endpoint(), "example.invalid/wasm/hello:latest").unwrap();
    let digests = image["status"]["repoDigests"].to_string();
    assert!(
        digests.contains("example.invalid/wasm/hello@sha256:"),
        "{image}"
    );
    // The dead mirror was tried first and skipped; the log says why.
    assert!(
        d.log()
            .contains("registry endpoint failed; trying the next one"),
        "{}",
        d.log_tail(30)
    );

    let err = crictl_err(&d, &["pull", "example.invalid/wasm/missing:latest"]);
    for endpoint in [
        format!("http://127.0.0.1:{dead}"),
        format!("http://{}", reg.addr()),
    ] {
        assert!(err.contains(&endpoint), "{err}");
    }
    assert!(!err.contains("https://example.invalid"), "{err}");
}

#[test]
fn basic_auth_credentials_from_the_request_or_the_config_file() {
    let reg = Registry::start_with_basic_auth("wcri", "s3cret").unwrap();
    let (module, _) = hello_files();
    let creds = RegistryAuth::Basic("wcri".into(), "s3cret".into());
    push_wasm_blocking(
        reg.addr(),
        "wasm/private:1",
        WasmFormat::CncfArtifact,
        &module,
        &creds,
    )
    .unwrap();
    let reference = reg.image_ref("wasm/private:1");

    let d = Daemon::start(DaemonOpts::with_registry(reg.addr())).unwrap();
    let err = crictl_err(&d, &["pull", &reference]);
    assert!(
        err.contains("code = Unauthenticated") && err.contains("authentication required"),
        "{err}"
    );
    let err = crictl_err(&d, &["pull", "--creds", "wcri:wrong", &reference]);
    assert!(err.contains("code = Unauthenticated"), "{err}");
    d.crictl_ok(["pull", "--creds", "wcri:s3cret", &reference])
        .unwrap();
    assert_eq!(repo_tags(&d), std::slice::from_ref(&reference));

    // `auth` (base64 of user:password) in the request, through the gRPC API.
    d.crictl_ok(["rmi", &reference]).unwrap();
    let cri = Cri::connect(d.socket());
    let mut images = cri.image.clone();
    cri.run(images.pull_image(PullImageRequest {
        image: Some(ImageSpec {
            image: reference.clone(),
            ..Default::default()
        }),
        auth: Some(proto::cri::AuthConfig {
            auth: "d2NyaTpzM2NyZXQ=".into(), // wcri:s3cret
            ..Default::default()
        }),
        ..Default::default()
    }))
    .unwrap();
    drop(d);

    for credentials in [
        "username = \"wcri\"\npassword = \"s3cret\"",
        "auth = \"d2NyaTpzM2NyZXQ=\"",
    ] {
        let (_dir, d) = daemon_with_config(
            &reg,
            &format!("[registries.\"{}\"]\n{credentials}\n", reg.addr()),
        );
        d.pull(&reference).unwrap();
        assert_eq!(repo_tags(&d), std::slice::from_ref(&reference));
    }
}

/// PullImage over a bare HTTP/2 connection with `grpc-timeout: timeout` and no client-side timer, so
/// the status is the one the daemon sent (tonic's client enforces the header itself and reports
/// its own Cancelled). Returns `grpc-status` and `grpc-message`.
fn raw_pull(socket: &Path, image: &str, timeout: &str) -> (i32, String) {
    use http_body_util::BodyExt;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use prost::Message;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(connection);
        let message = PullImageRequest {
            image: Some(ImageSpec {
                image: image.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec();
        let mut frame = vec![0u8];
        frame.extend_from_slice(&u32::try_from(message.len()).unwrap().to_be_bytes());
        frame.extend_from_slice(&message);
        let request = hyper::Request::post("http://cri.invalid/runtime.v1.ImageService/PullImage")
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("grpc-timeout", timeout)
            .body(http_body_util::Full::new(bytes::Bytes::from(frame)))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap();
        let trailers = body.trailers().cloned().unwrap_or_default();
        // A reply without a message is "trailers-only": the status is in the headers.
        let field = |name: &str| {
            trailers
                .get(name)
                .or_else(|| headers.get(name))
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default()
        };
        (field("grpc-status").parse().unwrap(), field("grpc-message"))
    })
}

/// Accepts connections and never answers, like a registry that hangs.
struct BlackHole {
    addr: String,
    accepted: std::sync::mpsc::Receiver<std::net::TcpStream>,
}

impl BlackHole {
    fn start() -> BlackHole {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, accepted) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if tx.send(stream).is_err() {
                    return;
                }
            }
        });
        BlackHole { addr, accepted }
    }
}

#[test]
fn pull_stops_at_the_callers_deadline() {
    let hole = BlackHole::start();
    let d = Daemon::start(DaemonOpts::default()).unwrap();
    let cri = Cri::connect(d.socket());

    // critest's "public image should timeout if requested": 1 ms. The daemon itself answers
    // DeadlineExceeded (seen over a client that does not time out on its own).
    let (status, message) = raw_pull(&d.socket(), "registry.k8s.io/pause:3.10", "1m");
    assert_eq!(status, tonic::Code::DeadlineExceeded as i32, "{message}");

    let image = format!("{}/wasm/hangs:1", hole.addr);
    let started = Instant::now();
    let (status, message) = raw_pull(&d.socket(), &image, "2S");
    assert_eq!(status, tonic::Code::DeadlineExceeded as i32, "{message}");
    assert!(message.contains("deadline"), "{message}");
    let took = started.elapsed();
    assert!(
        took > Duration::from_millis(1900) && took < Duration::from_secs(8),
        "{took:?}"
    );
    // The pull really stopped: the daemon closed its connection to the hanging registry.
    let mut conn = hole
        .accepted
        .recv_timeout(Duration::from_secs(5))
        .expect("the daemon connected to the registry");
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // (What it sent before, if anything, depends on how far it got: under load even building the
    // HTTP client can take a while.)
    let closed = conn.read_to_end(&mut Vec::new());
    assert!(closed.is_ok(), "connection still open: {closed:?}");
    // Nothing half-written: no image, no temp files.
    let mut images = cri.image.clone();
    let listed = cri
        .run(images.list_images(ListImagesRequest::default()))
        .unwrap()
        .into_inner();
    assert!(listed.images.is_empty());
    let tmp = d.root().join("images").join("tmp");
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
    assert!(
        d.log()
            .contains("did not finish before the caller's deadline")
    );
}
