//! Pulls of every Wasm image convention against the fake registry: raw Wasm layers become files,
//! and an image without Entrypoint/Cmd gets its single Wasm layer as Entrypoint.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use serde_json::json;

use crate::error::ImageError;
use crate::registry::fake::{FakeRegistry, Layer};
use crate::store::ImageStore;

const REF: &str = "127.0.0.1:5000/wasm/app:latest";
const MODULE: &[u8] = b"\0asm\x01\0\0\0";
const COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";
const RUNWASI_LAYER: &str = "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

fn store(root: &std::path::Path, fake: &FakeRegistry) -> ImageStore {
    ImageStore::with_registry(root, Arc::new(fake.clone())).unwrap()
}

fn config(value: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&value).unwrap()
}

#[tokio::test]
async fn runwasi_style_image_runs_its_wasm_layer() {
    let root = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::default();
    let pushed = fake.push_with_config(
        REF,
        OCI_CONFIG,
        config(json!({"architecture": "wasm", "os": "wasip2", "config": {"Env": ["A=1"]}})),
        vec![Layer::wasm(RUNWASI_LAYER, COMPONENT, None)],
    );
    let image = store(root.path(), &fake).pull(REF, None).await.unwrap();
    let hex = pushed.layers[0].strip_prefix("sha256:").unwrap();
    let file = format!("/{hex}.wasm");
    assert_eq!(image.config.entrypoint, std::slice::from_ref(&file));
    assert_eq!(image.config.env, ["A=1"]);
    assert_eq!(image.architecture, "wasm");
    assert_eq!(
        std::fs::read(image.rootfs.join(&file[1..])).unwrap(),
        COMPONENT
    );
}

#[tokio::test]
async fn cncf_wasm_artifact_uses_the_title_annotation() {
    let root = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::default();
    fake.push_with_config(
        REF,
        "application/vnd.wasm.config.v0+json",
        config(json!({
            "created": "2024-01-01T00:00:00Z",
            "architecture": "wasm",
            "os": "wasip1",
            "layerDigests": [],
            "component": null,
        })),
        vec![Layer::wasm("application/wasm", MODULE, Some("hello.wasm"))],
    );
    let image = store(root.path(), &fake).pull(REF, None).await.unwrap();
    assert_eq!(image.config.entrypoint, ["/hello.wasm"]);
    assert_eq!(image.os, "wasip1");
    assert_eq!(
        std::fs::read(image.rootfs.join("hello.wasm")).unwrap(),
        MODULE
    );
}

#[tokio::test]
async fn wasm_to_oci_with_an_empty_config() {
    let root = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::default();
    fake.push_with_config(
        REF,
        "application/vnd.wasm.config.v1+json",
        Vec::new(),
        vec![Layer::wasm(
            "application/vnd.wasm.content.layer.v1+wasm",
            MODULE,
            Some("module.wasm"),
        )],
    );
    let image = store(root.path(), &fake).pull(REF, None).await.unwrap();
    assert_eq!(image.config.entrypoint, ["/module.wasm"]);
    assert!(image.rootfs.join("module.wasm").is_file());
}

#[tokio::test]
async fn runwasi_builder_empty_entrypoint_is_replaced_but_a_real_one_is_kept() {
    let root = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::default();
    fake.push_with_config(
        REF,
        OCI_CONFIG,
        config(json!({"architecture": "wasm", "os": "wasi", "config": {"Entrypoint": [""]}})),
        vec![Layer::wasm(
            "application/vnd.w3c.wasm.module.v1+wasm",
            MODULE,
            Some("m.wasm"),
        )],
    );
    let other = "127.0.0.1:5000/wasm/app:explicit";
    fake.push_with_config(
        other,
        OCI_CONFIG,
        config(json!({"architecture": "wasm", "os": "wasi", "config": {"Cmd": ["/m.wasm", "x"]}})),
        vec![Layer::wasm(RUNWASI_LAYER, MODULE, Some("m.wasm"))],
    );
    let store = store(root.path(), &fake);
    let image = store.pull(REF, None).await.unwrap();
    assert_eq!(image.config.entrypoint, ["/m.wasm"]);
    let image = store.pull(other, None).await.unwrap();
    assert!(image.config.entrypoint.is_empty());
    assert_eq!(image.config.cmd, ["/m.wasm", "x"]);
}

#[tokio::test]
async fn several_wasm_layers_are_all_placed_and_none_is_chosen() {
    let root = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::default();
    let pushed = fake.push_with_config(
        REF,
        OCI_CONFIG,
        config(json!({"architecture": "wasm", "os": "wasip2"})),
        vec![
            Layer::wasm(RUNWASI_LAYER, MODULE, Some("app.wasm")),
            // Same title again, and a title that would leave the root: both get digest names.
            Layer::wasm(RUNWASI_LAYER, COMPONENT, Some("app.wasm")),
            Layer::wasm(
                "application/wasm",
                b"\0asm\x01\0\0\0\0",
                Some("../evil.wasm"),
            ),
        ],
    );
    let image = store(root.path(), &fake).pull(REF, None).await.unwrap();
    assert!(image.config.entrypoint.is_empty() && image.config.cmd.is_empty());
    assert_eq!(
        std::fs::read(image.rootfs.join("app.wasm")).unwrap(),
        MODULE
    );
    for digest in &pushed.layers[1..] {
        let name = format!("{}.wasm", digest.strip_prefix("sha256:").unwrap());
        assert!(image.rootfs.join(name).is_file());
    }
    assert!(!root.path().join("rootfs/evil.wasm").exists());
}

#[tokio::test]
async fn tar_and_wasm_layers_mix_and_diff_ids_are_checked() {
    let root = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::default();
    let tar = Layer::files(&[("etc/app.toml", b"x = 1")]);
    let wasm = Layer::wasm(RUNWASI_LAYER, MODULE, Some("app.wasm"));
    let diff_ids = json!([tar.diff_id, wasm.diff_id]);
    fake.push_with_config(
        REF,
        OCI_CONFIG,
        config(json!({"architecture": "wasm", "os": "wasip1", "rootfs": {"type": "layers", "diff_ids": diff_ids}})),
        vec![tar, wasm],
    );
    let image = store(root.path(), &fake).pull(REF, None).await.unwrap();
    assert_eq!(image.config.entrypoint, ["/app.wasm"]);
    assert!(image.rootfs.join("etc/app.toml").is_file());

    let bad = "127.0.0.1:5000/wasm/app:bad";
    let wasm = Layer::wasm(RUNWASI_LAYER, COMPONENT, None);
    fake.push_with_config(
        bad,
        OCI_CONFIG,
        config(json!({"rootfs": {"diff_ids": [format!("sha256:{}", "0".repeat(64))]}})),
        vec![wasm],
    );
    let root = tempfile::tempdir().unwrap();
    let err = store(root.path(), &fake).pull(bad, None).await.unwrap_err();
    assert!(matches!(err, ImageError::DiffIdMismatch { .. }), "{err}");
}

#[tokio::test]
async fn a_wasm_layer_that_is_not_wasm_fails_and_records_nothing() {
    let root = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::default();
    fake.push_with_config(
        REF,
        OCI_CONFIG,
        config(json!({"architecture": "wasm"})),
        vec![Layer::wasm("application/wasm", b"\x7fELF....", None)],
    );
    let store = store(root.path(), &fake);
    let err = store.pull(REF, None).await.unwrap_err();
    assert!(matches!(err, ImageError::NotWasm { .. }), "{err}");
    assert!(store.list().is_empty());
    assert_eq!(
        std::fs::read_dir(root.path().join("rootfs"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(root.path().join("tmp")).unwrap().count(),
        0
    );
}

#[tokio::test]
async fn unknown_config_media_type_is_named() {
    let root = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::default();
    fake.push_with_config(
        REF,
        "application/vnd.fermyon.spin.application.v1+config",
        config(json!({})),
        vec![Layer::wasm(
            "application/vnd.wasm.content.layer.v1+wasm",
            MODULE,
            None,
        )],
    );
    let err = store(root.path(), &fake).pull(REF, None).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("application/vnd.fermyon.spin.application.v1+config"),
        "{err}"
    );
}
