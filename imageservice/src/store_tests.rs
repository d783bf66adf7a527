//! End-to-end tests of `ImageStore` (pull, lookups, remove, reopen) against the fake registry.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use crate::error::ImageError;
use crate::registry::fake::{FakeRegistry, Layer, Pushed};
use crate::store::ImageStore;
use crate::types::RegistryAuth;

const HELLO: &str = "127.0.0.1:5000/wasm/hello:latest";

fn open(root: &Path, fake: &FakeRegistry) -> ImageStore {
    ImageStore::with_registry(root, Arc::new(fake.clone())).unwrap()
}

fn hello_layer() -> Layer {
    Layer::files(&[("hello.wasm", b"\0asm\x01\0\0\0")])
}

fn push_hello(fake: &FakeRegistry, reference: &str) -> Pushed {
    fake.push_image(reference, "/hello.wasm", vec![hello_layer()])
}

fn dir_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap()
}

#[tokio::test]
async fn pull_stores_verified_blobs_rootfs_and_record() {
    let root = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::default();
    let pushed = push_hello(&fake, HELLO);
    let store = open(root.path(), &fake);

    let image = store.pull("127.0.0.1:5000/wasm/hello", None).await.unwrap();

    assert_eq!(image.id, pushed.config);
    assert_eq!(image.repo_tags, [HELLO]);
    assert_eq!(
        image.repo_digests,
        [format!("127.0.0.1:5000/wasm/hello@{}", pushed.manifest)]
    );
    assert!(image.size > 0);
    assert_eq!(image.config.entrypoint, ["/hello.wasm"]);
    assert_eq!(image.config.labels["app"], "hello");
    assert_eq!(
        (image.os.as_str(), image.architecture.as_str()),
        ("wasip1", "wasm")
    );
    assert_eq!(
        image.rootfs,
        root.path().join("rootfs").join(hex(&pushed.config))
    );
    assert_eq!(
        std::fs::read(image.rootfs.join("hello.wasm")).unwrap(),
        b"\0asm\x01\0\0\0"
    );
    let mut blobs = vec![
        hex(&pushed.manifest).to_owned(),
        hex(&pushed.config).to_owned(),
        hex(&pushed.layers[0]).to_owned(),
    ];
    blobs.sort();
    assert_eq!(dir_entries(&root.path().join("blobs/sha256")), blobs);
    assert_eq!(
        dir_entries(&root.path().join("records")),
        [format!("{}.json", hex(&pushed.config))]
    );
    assert!(dir_entries(&root.path().join("tmp")).is_empty());
    assert_eq!(fake.auths(), [None]);
}

#[tokio::test]
async fn lookups_by_id_tag_and_digest() {
    let root = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::default();
    let pushed = push_hello(&fake, "docker.io/library/hello:latest");
    let store = open(root.path(), &fake);
    let image = store.pull("hello", None).await.unwrap();
    assert_eq!(image.repo_tags, ["docker.io/library/hello:latest"]);

    for lookup in [
        image.id.clone(),
        hex(&image.id).to_owned(),
        "hello".to_owned(),
        "library/hello:latest".to_owned(),
        "docker.io/library/hello:latest".to_owned(),
        format!("hello@{}", pushed.manifest),
        format!("docker.io/library/hello@{}", pushed.manifest),
    ] {
        assert_eq!(store.get(&lookup).as_ref(), Some(&image), "{lookup}");
    }
    for miss in [
        "hello:other",
        "other",
        &format!("sha256:{}", "0".repeat(64)),
        &hex(&image.id)[..12],
        "",
        "NOT A REF",
    ] {
        assert!(store.get(miss).is_none(), "{miss}");
    }
    assert_eq!(store.list(), [image]);
}

#[tokio::test]
async fn present_blobs_are_not_fetched_again_and_tags_accumulate() {
    let root = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::default();
    push_hello(&fake, HELLO);
    push_hello(&fake, "127.0.0.1:5000/wasm/hello:v1");
    let store = open(root.path(), &fake);
    store.pull(HELLO, None).await.unwrap();
    let fetched = fake.blob_fetches();
    assert_eq!(fetched.len(), 2, "config and layer");

    store.pull(HELLO, None).await.unwrap();
    let image = store
        .pull("127.0.0.1:5000/wasm/hello:v1", None)
        .await
        .unwrap();
    assert_eq!(fake.blob_fetches(), fetched);
    assert_eq!(
        fake.manifest_fetches().len(),
        3,
        "tags are always resolved again"
    );
    assert_eq!(image.repo_tags, [HELLO, "127.0.0.1:5000/wasm/hello:v1"]);
    assert_eq!(store.list().len(), 1);
}

#[tokio::test]
async fn a_moved_tag_leaves_the_old_image() {
    let root = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::default();
    push_hello(&fake, HELLO);
    let store = open(root.path(), &fake);
    let old = store.pull(HELLO, None).await.unwrap();

    fake.push_image(
        HELLO,
        "/v2.wasm",
        vec![Layer::files(&[("v2.wasm", b"\0asm")])],
    );
    let new = store.pull(HELLO, None).await.unwrap();
    assert_ne!(old.id, new.id);
    assert_eq!(new.repo_tags, [HELLO]);
    let old = store.get(&old.id).unwrap();
    assert!(old.repo_tags.is_empty());
    assert_eq!(
        old.repo_digests.len(),
        1,
        "the digest still names the old image"
    );
    assert_eq!(store.get(HELLO).unwrap().id, new.id);
    drop(store);
    // The move was written to disk too.
    let store = open(root.path(), &fake);
    assert!(store.get(&old.id).unwrap().repo_tags.is_empty());
}

#[tokio::test]
async fn remove_deletes_unshared_content_and_is_idempotent() {
    let root = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::default();
    let shared = hello_layer();
    let a = fake.push_image("127.0.0.1:5000/a:latest", "/hello.wasm", vec![shared]);
    let b = fake.push_image(
        "127.0.0.1:5000/b:latest",
        "/other.wasm",
        vec![hello_layer()],
    );
    assert_eq!(a.layers, b.layers, "same layer bytes");
    assert_ne!(a.config, b.config);
    let store = open(root.path(), &fake);
    store.pull("127.0.0.1:5000/a", None).await.unwrap();
    let image_b = store.pull("127.0.0.1:5000/b", None).await.unwrap();

    store.remove("127.0.0.1:5000/a").unwrap();
    assert!(store.get("127.0.0.1:5000/a").is_none());
    assert!(store.get(&a.config).is_none());
    let blobs = dir_entries(&root.path().join("blobs/sha256"));
    assert!(!blobs.contains(&hex(&a.config).to_owned()));
    assert!(!blobs.contains(&hex(&a.manifest).to_owned()));
    assert!(
        blobs.contains(&hex(&a.layers[0]).to_owned()),
        "still used by b"
    );
    assert_eq!(dir_entries(&root.path().join("rootfs")), [hex(&b.config)]);

    store.remove("127.0.0.1:5000/a").unwrap();
    store.remove(&format!("sha256:{}", "0".repeat(64))).unwrap();
    store.remove("never-pulled").unwrap();

    store.remove(&image_b.id).unwrap();
    assert!(store.list().is_empty());
    assert!(dir_entries(&root.path().join("blobs/sha256")).is_empty());
    assert!(dir_entries(&root.path().join("rootfs")).is_empty());
    assert!(dir_entries(&root.path().join("records")).is_empty());
}

#[tokio::test]
async fn five_concurrent_removes_of_one_image_all_succeed() {
    let root = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::default();
    fake.push_image(
        "127.0.0.1:5000/a:latest",
        "/hello.wasm",
        vec![hello_layer()],
    );
    let store = std::sync::Arc::new(open(root.path(), &fake));
    let image = store.pull("127.0.0.1:5000/a", None).await.unwrap();

    // By id, by tag and by repo digest at once, as the kubelet's GC and a user may: each succeeds.
    let lookups = [
        image.id.clone(),
        "127.0.0.1:5000/a:latest".to_string(),
        image.repo_digests[0].clone(),
        image.id.clone(),
        "127.0.0.1:5000/a".to_string(),
    ];
    let threads: Vec<_> = lookups
        .into_iter()
        .map(|lookup| {
            let store = std::sync::Arc::clone(&store);
            std::thread::spawn(move || store.remove(&lookup))
        })
        .collect();
    for t in threads {
        t.join().unwrap().unwrap();
    }
    assert!(store.list().is_empty());
    assert!(dir_entries(&root.path().join("blobs/sha256")).is_empty());
    assert!(dir_entries(&root.path().join("rootfs")).is_empty());
}

#[tokio::test]
async fn reopen_loads_records_and_sweeps_leftovers() {
    let root = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::default();
    push_hello(&fake, HELLO);
    let store = open(root.path(), &fake);
    let image = store.pull(HELLO, None).await.unwrap();
    assert!(matches!(
        ImageStore::with_registry(root.path(), Arc::new(fake.clone())),
        Err(ImageError::StoreLocked { .. })
    ));
    drop(store);

    let orphan_blob = root.path().join("blobs/sha256").join("f".repeat(64));
    let orphan_rootfs = root.path().join("rootfs").join("e".repeat(64));
    let stale_tmp = root.path().join("tmp/blob-123");
    std::fs::write(&orphan_blob, b"x").unwrap();
    std::fs::create_dir(&orphan_rootfs).unwrap();
    std::fs::write(&stale_tmp, b"x").unwrap();

    let store = open(root.path(), &fake);
    assert_eq!(store.list(), std::slice::from_ref(&image));
    assert!(!orphan_blob.exists() && !orphan_rootfs.exists() && !stale_tmp.exists());
    assert!(image.rootfs.join("hello.wasm").exists());
}

#[tokio::test]
async fn tampered_blob_is_refused_and_leaves_nothing() {
    let root = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::default();
    let pushed = push_hello(&fake, HELLO);
    // Same length as the real layer, different bytes.
    let evil = vec![0x42; hello_layer().bytes.len()];
    fake.tamper(&pushed.layers[0], evil);
    let store = open(root.path(), &fake);

    let err = store.pull(HELLO, None).await.unwrap_err();
    assert!(
        matches!(err, ImageError::DigestMismatch { ref expected, .. } if *expected == pushed.layers[0]),
        "{err}"
    );
    let blobs = dir_entries(&root.path().join("blobs/sha256"));
    assert!(!blobs.contains(&hex(&pushed.layers[0]).to_owned()));
    assert!(dir_entries(&root.path().join("tmp")).is_empty());
    assert!(dir_entries(&root.path().join("rootfs")).is_empty());
    assert!(store.list().is_empty());
}

#[tokio::test]
async fn oversized_blob_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::default();
    let pushed = push_hello(&fake, HELLO);
    fake.tamper(&pushed.layers[0], vec![0; 1 << 20]);
    let store = open(root.path(), &fake);
    let err = store.pull(HELLO, None).await.unwrap_err();
    assert!(matches!(err, ImageError::SizeMismatch { .. }), "{err}");
    assert!(dir_entries(&root.path().join("tmp")).is_empty());
}

#[tokio::test]
async fn unsupported_layers_fail_before_any_download() {
    let root = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::default();
    let mut layer = hello_layer();
    layer.media_type = "application/vnd.wasm.content.layer.v1+data".into();
    fake.push_image(HELLO, "/hello.wasm", vec![hello_layer(), layer]);
    let store = open(root.path(), &fake);
    let err = store.pull(HELLO, None).await.unwrap_err();
    assert!(
        matches!(err, ImageError::UnsupportedLayer { ref media_type, .. } if media_type == "application/vnd.wasm.content.layer.v1+data"),
        "{err}"
    );
    let message = err.to_string();
    assert!(
        message.contains("application/vnd.oci.image.layer.v1.tar+gzip, application/vnd.wasm.content.layer.v1+data"),
        "{message}"
    );
    assert!(fake.blob_fetches().is_empty());
}

#[tokio::test]
async fn index_prefers_the_wasm_entry() {
    let root = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::default();
    let native = fake.push_image(
        "127.0.0.1:5000/multi:native",
        "/bin/app",
        vec![Layer::files(&[("bin/app", b"ELF")])],
    );
    let wasm = push_hello(&fake, "127.0.0.1:5000/multi:wasm");
    let index = fake.push_index(
        "127.0.0.1:5000/multi:latest",
        &[
            (&native.manifest, native.manifest_size, "linux", "amd64"),
            (&wasm.manifest, wasm.manifest_size, "wasip1", "wasm"),
        ],
    );
    let store = open(root.path(), &fake);
    let image = store.pull("127.0.0.1:5000/multi", None).await.unwrap();
    assert_eq!(image.id, wasm.config);
    assert_eq!(
        image.repo_digests,
        [format!("127.0.0.1:5000/multi@{index}")]
    );
    assert!(
        fake.blob_fetches()
            .iter()
            .all(|d| !native.layers.contains(d))
    );

    let only_arm = fake.push_index(
        "127.0.0.1:5000/multi:arm",
        &[(&native.manifest, native.manifest_size, "linux", "arm64")],
    );
    let err = store
        .pull("127.0.0.1:5000/multi:arm", None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, ImageError::NoMatchingPlatform { ref digest, ref available } if *digest == only_arm && available == "linux/arm64"),
        "{err}"
    );
}

#[tokio::test]
async fn pull_by_digest_records_no_tag_and_reuses_the_stored_manifest() {
    let root = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::default();
    let pushed = push_hello(&fake, HELLO);
    let store = open(root.path(), &fake);
    let by_digest = format!("127.0.0.1:5000/wasm/hello@{}", pushed.manifest);
    let image = store.pull(&by_digest, None).await.unwrap();
    assert!(image.repo_tags.is_empty());
    assert_eq!(image.repo_digests, std::slice::from_ref(&by_digest));
    assert_eq!(store.get(&by_digest).unwrap().id, image.id);

    store.pull(&by_digest, None).await.unwrap();
    assert_eq!(fake.manifest_fetches().len(), 1);
}

#[tokio::test]
async fn manifest_not_matching_the_requested_digest_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::default();
    let pushed = push_hello(&fake, HELLO);
    let wrong = format!("127.0.0.1:5000/wasm/hello@sha256:{}", "a".repeat(64));
    fake.serve_manifest(&wrong, fake.manifest_bytes(&pushed.manifest));
    let store = open(root.path(), &fake);
    let err = store.pull(&wrong, None).await.unwrap_err();
    assert!(
        matches!(err, ImageError::DigestMismatch { ref actual, .. } if *actual == pushed.manifest),
        "{err}"
    );
    assert!(dir_entries(&root.path().join("blobs/sha256")).is_empty());
    assert!(store.list().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pulls_agree() {
    let root = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::default();
    push_hello(&fake, HELLO);
    push_hello(&fake, "127.0.0.1:5000/wasm/hello:other");
    let store = Arc::new(open(root.path(), &fake));
    let pulls: Vec<_> = [HELLO, HELLO, "127.0.0.1:5000/wasm/hello:other", HELLO]
        .into_iter()
        .map(|reference| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.pull(reference, None).await })
        })
        .collect();
    let mut ids = Vec::new();
    for pull in pulls {
        ids.push(pull.await.unwrap().unwrap().id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 1);
    assert_eq!(store.list()[0].repo_tags.len(), 2);
    assert!(dir_entries(&root.path().join("tmp")).is_empty());
    assert_eq!(dir_entries(&root.path().join("rootfs")).len(), 1);
}

#[tokio::test]
async fn credentials_reach_the_registry_and_usage_is_reported() {
    let root = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::default();
    push_hello(&fake, HELLO);
    let store = open(root.path(), &fake);
    let auth = RegistryAuth::basic("robot", "secret");
    assert!(!format!("{auth:?}").contains("secret"));
    store.pull(HELLO, Some(auth)).await.unwrap();
    let bearer = RegistryAuth::Bearer {
        token: "tok3n".into(),
    };
    assert!(!format!("{bearer:?}").contains("tok3n"));
    store.pull(HELLO, Some(bearer)).await.unwrap();
    assert_eq!(
        fake.auths(),
        [
            Some("basic:robot".to_owned()),
            Some("bearer token".to_owned())
        ]
    );

    let usage = store.fs_usage().unwrap();
    assert!(usage.used_bytes > 0);
    assert!(usage.inodes_used >= 10, "{usage:?}");
    assert_eq!(usage.mountpoint, root.path().display().to_string());
}

#[tokio::test]
async fn invalid_reference_is_reported_before_any_network() {
    let root = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::default();
    let store = open(root.path(), &fake);
    let err = store.pull("Not/Valid", None).await.unwrap_err();
    assert!(matches!(err, ImageError::InvalidReference { .. }), "{err}");
    assert!(fake.auths().is_empty());
}

#[test]
fn store_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ImageStore>();
}
