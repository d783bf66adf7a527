//! The registry harness and image pusher round-trip: push every fixture, pull one back.

use conformance::image::{block_on, build_and_push_all, pull_image};
use conformance::{Registry, fixtures};

#[test]
fn push_all_fixtures_and_pull_hello_back() {
    let registry = Registry::start().unwrap();
    let out = tempfile::tempdir().unwrap();
    let addr = registry.addr().to_string();
    let out_path = out.path().to_path_buf();
    let pushed = block_on(async move { build_and_push_all(&addr, &out_path).await }).unwrap();
    let names: Vec<&str> = pushed.iter().map(|(image, _)| image.as_str()).collect();
    for f in fixtures::FIXTURES {
        assert!(
            names.contains(&format!("wasm/{}:latest", f.name).as_str()),
            "{names:?}"
        );
    }
    assert!(names.contains(&"linux/true:latest"), "{names:?}");
    for (image, digest) in &pushed {
        assert!(
            digest.starts_with("sha256:") && digest.len() == 71,
            "{image}: {digest}"
        );
    }

    let addr = registry.addr().to_string();
    let hello = block_on(async move { pull_image(&addr, "wasm/hello:latest").await }).unwrap();
    assert_eq!(
        Some(hello.digest.as_str()),
        pushed
            .iter()
            .find(|(i, _)| i == "wasm/hello:latest")
            .map(|(_, d)| d.as_str())
    );
    let wasm = hello
        .file("/hello.wasm")
        .unwrap()
        .expect("layer holds /hello.wasm");
    assert!(fixtures::is_module(&wasm));
    assert_eq!(wasm, std::fs::read(out.path().join("hello.wasm")).unwrap());
    assert_eq!(
        hello.config["config"]["Entrypoint"],
        serde_json::json!(["/hello.wasm"])
    );
    assert_eq!(hello.config["os"], "wasip1");
    assert_eq!(hello.config["architecture"], "wasm");
    let diff_id = conformance::image::sha256_digest(&hello.layers[0]);
    assert_eq!(hello.config["rootfs"]["diff_ids"][0], diff_id.as_str());

    let addr = registry.addr().to_string();
    let component =
        block_on(async move { pull_image(&addr, "wasm/hello-component:latest").await }).unwrap();
    assert_eq!(component.config["os"], "wasip2");

    let addr = registry.addr().to_string();
    let elf = block_on(async move { pull_image(&addr, "linux/true:latest").await }).unwrap();
    assert_eq!(elf.config["os"], "linux");
    assert_eq!(elf.config["architecture"], "amd64");
    assert!(elf.file("/true").unwrap().unwrap().starts_with(b"\x7fELF"));
}

#[test]
fn pushing_the_same_image_twice_gives_the_same_digest() {
    let registry = Registry::start().unwrap();
    let hello = fixtures::fixture_path(fixtures::fixtures_dir().unwrap(), "hello");
    let spec = conformance::ImageSpec {
        cmd: vec!["x".into()],
        env: vec!["A=1".into()],
        workdir: Some("/app".into()),
        ..conformance::ImageSpec::single(hello, "/app/bin/hello.wasm")
    };
    let (a1, s1) = (registry.addr().to_string(), spec.clone());
    let first =
        block_on(async move { conformance::push_image(&a1, "wasm/twice:1", &s1).await }).unwrap();
    let a2 = registry.addr().to_string();
    let second =
        block_on(async move { conformance::push_image(&a2, "wasm/twice:2", &spec).await }).unwrap();
    assert_eq!(first, second);

    let a3 = registry.addr().to_string();
    let pulled = block_on(async move { pull_image(&a3, "wasm/twice:1").await }).unwrap();
    assert_eq!(pulled.config["config"]["WorkingDir"], "/app");
    assert_eq!(pulled.config["config"]["Cmd"], serde_json::json!(["x"]));
    assert_eq!(pulled.config["config"]["Env"], serde_json::json!(["A=1"]));
    let mut archive = tar::Archive::new(pulled.layers[0].as_slice());
    let entries: Vec<(String, u32)> = archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.path().unwrap().to_string_lossy().into_owned(),
                e.header().mode().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        entries,
        vec![
            ("app/".to_string(), 0o755),
            ("app/bin/".to_string(), 0o755),
            ("app/bin/hello.wasm".to_string(), 0o755)
        ]
    );
}

#[test]
fn start_with_fixtures_serves_every_fixture() {
    let registry = Registry::start_with_fixtures().unwrap();
    let addr = registry.addr().to_string();
    let loop_image = block_on(async move { pull_image(&addr, "wasm/loop:latest").await }).unwrap();
    assert!(fixtures::is_module(
        &loop_image.file("/loop.wasm").unwrap().unwrap()
    ));
    assert_eq!(
        registry.image_ref("wasm/loop:latest"),
        format!("{}/wasm/loop:latest", registry.addr())
    );
}
