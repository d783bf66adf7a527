//! `import` and `export_image` against the fake registry and layouts built here: round trips
//! through a tar and a directory, naming rules, tampered layouts leave nothing behind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;

use crate::digest::Digest;
use crate::error::ImageError;
use crate::export::export_image;
use crate::registry::fake::{FakeRegistry, Layer, OCI_LAYER_GZIP};
use crate::store::ImageStore;

const HELLO: &str = "127.0.0.1:5000/wasm/hello:1";
const WASM: &[u8] = b"\0asm\x01\0\0\0";

fn open(root: &Path) -> ImageStore {
    ImageStore::with_registry(root, Arc::new(FakeRegistry::default())).unwrap()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Pulls HELLO from a fake into a store at `<dir>/a` and returns that store's root.
async fn pulled_store(dir: &Path) -> PathBuf {
    let fake = FakeRegistry::default();
    fake.push_image(
        HELLO,
        "/hello.wasm",
        vec![Layer::files(&[("hello.wasm", WASM)])],
    );
    let root = dir.join("a");
    let store = ImageStore::with_registry(&root, Arc::new(fake)).unwrap();
    store.pull(HELLO, None).await.unwrap();
    root
}

/// A layout written by hand: one image of one tar+gzip layer, `index.json` entry annotated with
/// `annotations`. Returns the layout dir and the manifest digest.
fn hand_made_layout(dir: &Path, annotations: serde_json::Value) -> (PathBuf, String) {
    let layout = dir.join("layout");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let digest = Digest::of(bytes);
        std::fs::write(blobs.join(digest.hex()), bytes).unwrap();
        (digest.to_string(), bytes.len())
    };
    let layer = Layer::files(&[("app.wasm", WASM)]);
    let (layer_digest, layer_size) = put(&layer.bytes);
    let config = serde_json::to_vec(&json!({
        "architecture": "wasm", "os": "wasip1",
        "config": {"Entrypoint": ["/app.wasm"]},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
    }))
    .unwrap();
    let (config_digest, config_size) = put(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": layer_digest, "size": layer_size}],
    }))
    .unwrap();
    let (manifest_digest, manifest_size) = put(&manifest);
    let mut entry = json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": manifest_digest, "size": manifest_size});
    if !annotations.is_null() {
        entry["annotations"] = annotations;
    }
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&json!({"schemaVersion": 2, "manifests": [entry]})).unwrap(),
    )
    .unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    (layout, manifest_digest)
}

#[tokio::test]
async fn export_then_import_through_a_tar_and_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let root_a = pulled_store(dir.path()).await;
    let original = open_existing(&root_a);

    let tar = dir.path().join("hello.tar");
    let exported = export_image(&root_a, HELLO, &tar).unwrap();
    assert_eq!(exported.image_id, original.id);
    assert_eq!(exported.names, [HELLO]);
    assert_eq!(exported.blobs, 3, "manifest, config, layer");
    assert_eq!(
        original.repo_digests,
        [format!("127.0.0.1:5000/wasm/hello@{}", exported.manifest)]
    );
    let out_dir = dir.path().join("hello-layout");
    export_image(&root_a, &original.id, &out_dir).unwrap();
    assert_eq!(entries(&out_dir), ["blobs", "index.json", "oci-layout"]);
    assert_eq!(entries(&out_dir.join("blobs/sha256")).len(), 3);

    for (n, source) in [&tar, &out_dir].into_iter().enumerate() {
        let root_b = dir.path().join(format!("b{n}"));
        let store = open(&root_b);
        let imported = store.import(source, &[]).await.unwrap();
        assert_eq!(imported.len(), 1);
        let image = &imported[0];
        assert_eq!(image.id, original.id);
        assert_eq!(image.repo_tags, original.repo_tags);
        assert_eq!(image.repo_digests, original.repo_digests);
        assert_eq!(image.config, original.config);
        assert_eq!(image.size, original.size);
        assert_eq!(
            std::fs::read(image.rootfs.join("hello.wasm")).unwrap(),
            WASM
        );
        assert!(entries(&root_b.join("tmp")).is_empty());
        // Byte for byte the same store content as the pull.
        assert_eq!(
            entries(&root_b.join("blobs/sha256")),
            entries(&root_a.join("blobs/sha256"))
        );
        drop(store);
        // An imported image survives a reopen (its record names all its blobs) and removes
        // like a pulled one.
        let store = open(&root_b);
        assert_eq!(store.get(HELLO).unwrap().id, original.id);
        store.remove(HELLO).unwrap();
        assert!(entries(&root_b.join("blobs/sha256")).is_empty());
        assert!(entries(&root_b.join("rootfs")).is_empty());
    }
}

fn open_existing(root: &Path) -> crate::types::Image {
    let store = open(root);
    store.get(HELLO).unwrap()
}

#[tokio::test]
async fn names_come_from_annotations_or_from_name() {
    let dir = tempfile::tempdir().unwrap();
    let (layout, manifest) = hand_made_layout(
        dir.path(),
        json!({"org.opencontainers.image.ref.name": "example.com/team/app:2"}),
    );
    let store = open(&dir.path().join("root"));
    let images = store.import(&layout, &[]).await.unwrap();
    assert_eq!(images[0].repo_tags, ["example.com/team/app:2"]);
    assert_eq!(
        images[0].repo_digests,
        [format!("example.com/team/app@{manifest}")]
    );
    assert_eq!(images[0].config.entrypoint, ["/app.wasm"]);

    // `--name` replaces them and normalises like a pull.
    let images = store
        .import(&layout, &["app".to_owned(), "example.com/app:3".to_owned()])
        .await
        .unwrap();
    assert_eq!(
        images[0].repo_tags,
        [
            "example.com/team/app:2",
            "docker.io/library/app:latest",
            "example.com/app:3"
        ]
    );
}

#[tokio::test]
async fn containerd_name_wins_and_a_bare_tag_needs_name() {
    let dir = tempfile::tempdir().unwrap();
    let (layout, manifest) = hand_made_layout(
        dir.path(),
        json!({"io.containerd.image.name": "docker.io/library/app:7",
            "org.opencontainers.image.ref.name": "7"}),
    );
    let store = open(&dir.path().join("root"));
    let images = store.import(&layout, &[]).await.unwrap();
    assert_eq!(images[0].repo_tags, ["docker.io/library/app:7"]);

    let dir = tempfile::tempdir().unwrap();
    let (layout, _) = hand_made_layout(
        dir.path(),
        json!({"org.opencontainers.image.ref.name": "latest"}),
    );
    let root = dir.path().join("root");
    let store = open(&root);
    let err = store.import(&layout, &[]).await.unwrap_err();
    assert!(
        matches!(err, ImageError::UnnamedLayoutEntry { .. })
            && err.to_string().contains("bare tag \"latest\"")
            && err.to_string().contains("--name"),
        "{err}"
    );
    assert!(entries(&root.join("blobs/sha256")).is_empty());
    let _ = manifest;
}

#[tokio::test]
async fn name_needs_exactly_one_image() {
    let dir = tempfile::tempdir().unwrap();
    let (layout, manifest) = hand_made_layout(dir.path(), serde_json::Value::Null);
    // A second entry naming another manifest (its blob need not exist: the plan fails first).
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mut other = index["manifests"][0].clone();
    other["digest"] = json!(format!("sha256:{}", "a".repeat(64)));
    index["manifests"].as_array_mut().unwrap().push(other);
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
    let store = open(&dir.path().join("root"));
    let err = store
        .import(&layout, &["x:1".to_owned()])
        .await
        .unwrap_err();
    assert!(
        matches!(err, ImageError::NameNeedsOneImage { count: 2, ref digests, .. } if digests.contains(&manifest)),
        "{err}"
    );
}

#[tokio::test]
async fn a_tampered_layer_in_a_layout_is_refused_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (layout, manifest) = hand_made_layout(dir.path(), serde_json::Value::Null);
    // Flip one byte of the layer blob, keeping its size.
    let blobs = layout.join("blobs/sha256");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blobs.join(&manifest[7..])).unwrap()).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap()[7..].to_owned();
    let mut bytes = std::fs::read(blobs.join(&layer)).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(blobs.join(&layer), bytes).unwrap();

    let root = dir.path().join("root");
    let store = open(&root);
    let err = store
        .import(&layout, &["app:1".to_owned()])
        .await
        .unwrap_err();
    assert!(
        matches!(err, ImageError::DigestMismatch { ref expected, .. } if *expected == format!("sha256:{layer}")),
        "{err}"
    );
    assert!(store.list().is_empty());
    assert!(!entries(&root.join("blobs/sha256")).contains(&layer));
    assert!(entries(&root.join("tmp")).is_empty());
    assert!(entries(&root.join("rootfs")).is_empty());
}

#[tokio::test]
async fn a_tampered_manifest_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (layout, manifest) = hand_made_layout(dir.path(), serde_json::Value::Null);
    let path = layout.join("blobs/sha256").join(&manifest[7..]);
    // Trailing whitespace: still valid JSON, another digest.
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{text} ")).unwrap();
    let store = open(&dir.path().join("root"));
    let err = store
        .import(&layout, &["app:1".to_owned()])
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("failed to fetch manifest"),
        "{err}"
    );
    let chain = std::error::Error::source(&err).unwrap().to_string();
    assert!(chain.contains(&format!("expected {manifest}")), "{chain}");
}

#[tokio::test]
async fn bad_layouts_and_targets_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("root"));
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let err = store.import(&empty, &[]).await.unwrap_err();
    assert!(
        matches!(err, ImageError::MissingFromLayout { ref file, .. } if file == "oci-layout"),
        "{err}"
    );
    let gz = dir.path().join("layout.tar.gz");
    std::fs::write(&gz, [0x1f, 0x8b, 8, 0]).unwrap();
    let err = store.import(&gz, &[]).await.unwrap_err();
    assert!(err.to_string().contains("gunzip"), "{err}");

    let root_a = pulled_store(dir.path()).await;
    let err = export_image(&root_a, "nope:1", &dir.path().join("x.tar")).unwrap_err();
    assert!(matches!(err, ImageError::ImageNotFound { .. }), "{err}");
    let err = export_image(&root_a, HELLO, &empty.join("..").join("root")).unwrap_err();
    assert!(
        matches!(err, ImageError::ExportTarget { .. }),
        "a non-empty dir: {err}"
    );
    assert!(!dir.path().join("x.tar").exists());
}

#[tokio::test]
async fn a_corrupt_store_blob_is_not_exported() {
    let dir = tempfile::tempdir().unwrap();
    let root = pulled_store(dir.path()).await;
    let image = open_existing(&root);
    let config = root.join("blobs/sha256").join(&image.id[7..]);
    let mut bytes = std::fs::read(&config).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&config, bytes).unwrap();
    let out = dir.path().join("out.tar");
    let err = export_image(&root, HELLO, &out).unwrap_err();
    assert!(
        matches!(err, ImageError::CorruptBlob { ref digest, .. } if *digest == image.id),
        "{err}"
    );
    assert!(!out.exists());
    assert_eq!(
        entries(dir.path()),
        ["a"],
        "no temp file left beside the output"
    );
}
