//! Tests of the precompile cache (`precompile.rs`) with a fake precompiler: keys and paths, compile
//! once per Wasm digest, recompiling unusable artifacts, removal with the last image, sweeps at open.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::digest::Digest;
use crate::precompile::{PrecompileError, Precompiler};
use crate::registry::fake::{FakeRegistry, Layer};
use crate::store::ImageStore;

const MODULE: &[u8] = b"\0asm\x01\0\0\0";
const OTHER: &[u8] = b"\0asm\x01\0\0\0\x00";
const BROKEN: &[u8] = b"\0asm\x01\0\0\0broken";

/// "Compiles" to `NATIVE` + the Wasm bytes; refuses `BROKEN`.
struct FakePrecompiler {
    key: String,
    compiles: AtomicUsize,
}

impl FakePrecompiler {
    fn new(key: &str) -> Arc<FakePrecompiler> {
        Arc::new(FakePrecompiler {
            key: key.to_owned(),
            compiles: AtomicUsize::new(0),
        })
    }

    fn compiles(&self) -> usize {
        self.compiles.load(Ordering::SeqCst)
    }
}

impl Precompiler for FakePrecompiler {
    fn key(&self) -> &str {
        &self.key
    }

    fn precompile(&self, wasm: &[u8]) -> Result<Vec<u8>, PrecompileError> {
        self.compiles.fetch_add(1, Ordering::SeqCst);
        if wasm == BROKEN {
            return Err("invalid module".into());
        }
        Ok([b"NATIVE".as_slice(), wasm].concat())
    }

    fn check(&self, artifact: &Path) -> Result<(), PrecompileError> {
        let bytes = std::fs::read(artifact)?;
        if bytes.starts_with(b"NATIVE") {
            Ok(())
        } else {
            Err("not an artifact".into())
        }
    }
}

fn open(root: &Path, fake: &FakeRegistry) -> ImageStore {
    ImageStore::with_registry(root, Arc::new(fake.clone())).unwrap()
}

fn artifact_path(root: &Path, key: &str, wasm: &[u8]) -> PathBuf {
    root.join("precompiled")
        .join(key)
        .join(format!("{}.cwasm", Digest::of(wasm).hex()))
}

#[tokio::test]
async fn pull_time_precompile_compiles_each_digest_once_into_a_private_file() {
    let root = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::default();
    fake.push_image(
        "127.0.0.1:5000/app:1",
        "/bin/app",
        vec![Layer::files(&[
            ("bin/app", MODULE),
            ("bin/copy.wasm", MODULE),
            ("etc/motd", b"hello"),
        ])],
    );
    let store = open(root.path(), &fake);
    let compiler = FakePrecompiler::new("00ff");
    store.set_precompiler(compiler.clone()).unwrap();
    let image = store.pull("127.0.0.1:5000/app:1", None).await.unwrap();

    assert_eq!(store.precompile(&image).await.unwrap(), 1);
    assert_eq!(compiler.compiles(), 1);
    let path = artifact_path(root.path(), "00ff", MODULE);
    assert_eq!(std::fs::read(&path).unwrap(), b"NATIVE\0asm\x01\0\0\0");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    assert_eq!(mode(&root.path().join("precompiled")), 0o700);

    let artifact = store
        .precompiled(&image, Path::new("bin/copy.wasm"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(artifact.path, path);
    assert_eq!(artifact.wasm_digest, Digest::of(MODULE).to_string());
    assert_eq!(artifact.wasm_size, MODULE.len() as u64);
    assert_eq!(compiler.compiles(), 1, "an existing artifact is reused");
    assert!(
        store
            .precompiled(&image, Path::new("etc/motd"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .precompiled(&image, Path::new("bin/missing"))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn unusable_artifact_is_recompiled_and_broken_wasm_is_not_retried() {
    let root = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::default();
    fake.push_image(
        "127.0.0.1:5000/app:1",
        "/app.wasm",
        vec![Layer::files(&[("app.wasm", MODULE), ("bad.wasm", BROKEN)])],
    );
    let store = open(root.path(), &fake);
    let compiler = FakePrecompiler::new("01");
    store.set_precompiler(compiler.clone()).unwrap();
    let image = store.pull("127.0.0.1:5000/app:1", None).await.unwrap();
    assert_eq!(store.precompile(&image).await.unwrap(), 1);
    assert_eq!(compiler.compiles(), 2);

    let path = artifact_path(root.path(), "01", MODULE);
    std::fs::write(&path, b"trunc").unwrap();
    let artifact = store
        .precompiled(&image, Path::new("app.wasm"))
        .await
        .unwrap();
    assert_eq!(artifact.unwrap().path, path);
    assert_eq!(std::fs::read(&path).unwrap(), b"NATIVE\0asm\x01\0\0\0");
    assert_eq!(compiler.compiles(), 3);

    // A module that does not compile is left to the pod process (which reports the error).
    let bad = store.precompiled(&image, Path::new("bad.wasm")).await;
    assert!(bad.unwrap().is_none());
    assert_eq!(compiler.compiles(), 3);
}

#[tokio::test]
async fn artifacts_go_with_the_last_image_that_uses_them() {
    let root = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::default();
    fake.push_image(
        "127.0.0.1:5000/a:1",
        "/app.wasm",
        vec![Layer::files(&[("app.wasm", MODULE)])],
    );
    fake.push_image(
        "127.0.0.1:5000/b:1",
        "/main.wasm",
        vec![Layer::files(&[("main.wasm", MODULE), ("x.wasm", OTHER)])],
    );
    let store = open(root.path(), &fake);
    store.set_precompiler(FakePrecompiler::new("aa")).unwrap();
    let a = store.pull("127.0.0.1:5000/a:1", None).await.unwrap();
    let b = store.pull("127.0.0.1:5000/b:1", None).await.unwrap();
    store.precompile(&a).await.unwrap();
    store.precompile(&b).await.unwrap();
    let shared = artifact_path(root.path(), "aa", MODULE);
    let only_b = artifact_path(root.path(), "aa", OTHER);
    assert!(shared.exists() && only_b.exists());

    store.remove(&b.id).unwrap();
    assert!(shared.exists(), "image a still uses it");
    assert!(!only_b.exists());
    let index = |id: &str| {
        root.path()
            .join("precompiled/images")
            .join(format!("{}.json", id.strip_prefix("sha256:").unwrap()))
    };
    assert!(!index(&b.id).exists());
    assert!(index(&a.id).exists());

    store.remove(&a.id).unwrap();
    assert!(!shared.exists());
    assert!(!index(&a.id).exists());
}

#[tokio::test]
async fn open_sweeps_orphans_and_a_new_key_sweeps_old_artifacts() {
    let root = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::default();
    fake.push_image(
        "127.0.0.1:5000/a:1",
        "/app.wasm",
        vec![Layer::files(&[("app.wasm", MODULE)])],
    );
    let image = {
        let store = open(root.path(), &fake);
        store.set_precompiler(FakePrecompiler::new("aa")).unwrap();
        let image = store.pull("127.0.0.1:5000/a:1", None).await.unwrap();
        store.precompile(&image).await.unwrap();
        image
    };
    let old = artifact_path(root.path(), "aa", MODULE);
    let orphan = artifact_path(root.path(), "aa", OTHER);
    std::fs::write(&orphan, b"NATIVE").unwrap();
    let orphan_index = root
        .path()
        .join("precompiled/images")
        .join(format!("{}.json", "e".repeat(64)));
    std::fs::write(&orphan_index, b"{}").unwrap();

    let store = open(root.path(), &fake);
    assert!(old.exists(), "listed by a live image's index");
    assert!(!orphan.exists());
    assert!(!orphan_index.exists());

    // Another engine: the old key's directory goes, and the artifact is compiled under the new key.
    let compiler = FakePrecompiler::new("bb");
    store.set_precompiler(compiler.clone()).unwrap();
    assert!(!root.path().join("precompiled/aa").exists());
    let artifact = store
        .precompiled(&image, Path::new("app.wasm"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(artifact.path, artifact_path(root.path(), "bb", MODULE));
    assert_eq!(compiler.compiles(), 1);
}

#[tokio::test]
async fn keys_must_be_plain_hex_and_no_precompiler_means_no_cache() {
    let root = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::default();
    fake.push_image(
        "127.0.0.1:5000/a:1",
        "/app.wasm",
        vec![Layer::files(&[("app.wasm", MODULE)])],
    );
    let store = open(root.path(), &fake);
    let image = store.pull("127.0.0.1:5000/a:1", None).await.unwrap();
    assert_eq!(store.precompile(&image).await.unwrap(), 0);
    assert!(
        store
            .precompiled(&image, Path::new("app.wasm"))
            .await
            .unwrap()
            .is_none()
    );
    for key in ["", "../x", "ABCD", &"a".repeat(65)] {
        assert!(
            store.set_precompiler(FakePrecompiler::new(key)).is_err(),
            "{key:?}"
        );
    }
}
