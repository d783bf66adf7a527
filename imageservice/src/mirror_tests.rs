//! Mirrors, credentials per endpoint, single-flight pulls and cancellation, against the fake
//! registry behind the real [`MirroredRegistry`].

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{ErrorKind, ImageError};
use crate::registry::fake::{FakeRegistry, Layer, Pushed};
use crate::registry::{Endpoint, FailureKind, MirroredRegistry};
use crate::store::ImageStore;
use crate::types::{RegistryAuth, RegistryHost, StoreOptions};

const LOCAL: &str = "127.0.0.1:5000";
const HELLO: &str = "127.0.0.1:5000/wasm/hello:latest";

fn push_hello(fake: &FakeRegistry, reference: &str) -> Pushed {
    fake.push_image(
        reference,
        "/hello.wasm",
        vec![Layer::files(&[("hello.wasm", b"\0asm\x01\0\0\0")])],
    )
}

fn mirrored(
    root: &std::path::Path,
    fake: &FakeRegistry,
    registries: BTreeMap<String, RegistryHost>,
) -> ImageStore {
    let options = StoreOptions {
        insecure_registries: vec!["plain.example:80".into()],
        registries,
    };
    let registry = MirroredRegistry::new(Arc::new(fake.clone()), &options);
    ImageStore::with_registry(root, Arc::new(registry)).unwrap()
}

fn host(mirrors: &[&str]) -> RegistryHost {
    RegistryHost {
        mirrors: mirrors
            .iter()
            .map(|m| Endpoint::parse(m).unwrap())
            .collect(),
        ..RegistryHost::default()
    }
}

#[tokio::test]
async fn a_mirror_serves_a_made_up_host_under_the_requested_name() {
    let root = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::default();
    let pushed = push_hello(&fake, HELLO);
    let store = mirrored(
        root.path(),
        &fake,
        BTreeMap::from([("example.invalid".into(), host(&["http://127.0.0.1:5000"]))]),
    );
    let image = store
        .pull("example.invalid/wasm/hello:latest", None)
        .await
        .unwrap();
    assert_eq!(image.repo_tags, ["example.invalid/wasm/hello:latest"]);
    assert_eq!(
        image.repo_digests,
        [format!("example.invalid/wasm/hello@{}", pushed.manifest)]
    );
    assert_eq!(fake.manifest_fetches(), [HELLO]);
    // The origin was never needed, so not even a client was built for it.
    assert_eq!(fake.opened(), [("http://127.0.0.1:5000".to_owned(), None)]);
    assert!(store.get("example.invalid/wasm/hello").is_some());
    assert!(store.get(HELLO).is_none());
}

#[tokio::test]
async fn failing_mirrors_fall_through_in_order_to_the_origin() {
    let root = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::default();
    push_hello(&fake, "docker.io/library/hello:latest");
    fake.fail_host("down.example", FailureKind::Unreachable);
    let store = mirrored(
        root.path(),
        &fake,
        BTreeMap::from([(
            "docker.io".into(),
            // Down; lacks the image (404); has the manifest but no blobs. So the manifest comes
            // from the third and the blobs, after trying each mirror, from the origin.
            host(&[
                "https://down.example",
                "https://cache.example/hub",
                "http://127.0.0.1:5000",
            ]),
        )]),
    );
    fake.fail_blobs_on(LOCAL);
    fake.fail_blobs_on("cache.example");
    push_hello(&fake, "127.0.0.1:5000/library/hello:latest");
    let image = store.pull("hello", None).await.unwrap();
    assert_eq!(image.repo_tags, ["docker.io/library/hello:latest"]);
    assert_eq!(
        fake.manifest_fetches(),
        [
            "down.example/library/hello:latest",
            "cache.example/hub/library/hello:latest",
            "127.0.0.1:5000/library/hello:latest",
        ]
    );
}

#[tokio::test]
async fn when_every_endpoint_fails_the_error_names_each_and_why() {
    let root = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::default();
    fake.fail_host("down.example", FailureKind::Unreachable);
    let store = mirrored(
        root.path(),
        &fake,
        BTreeMap::from([(
            "registry.k8s.io".into(),
            host(&["https://down.example", "http://127.0.0.1:5000"]),
        )]),
    );
    let err = store
        .pull("registry.k8s.io/pause:3.10", None)
        .await
        .unwrap_err();
    let message = crate::registry::error_chain(&err);
    for endpoint in [
        "https://down.example: registry unreachable",
        "http://127.0.0.1:5000: not found",
        "https://registry.k8s.io: not found",
    ] {
        assert!(message.contains(endpoint), "{message}");
    }
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[tokio::test]
async fn without_fallback_the_origin_is_never_contacted() {
    let root = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::default();
    push_hello(&fake, "registry.k8s.io/wasm/hello:latest");
    fake.fail_host(LOCAL, FailureKind::Other);
    let store = mirrored(
        root.path(),
        &fake,
        BTreeMap::from([(
            "registry.k8s.io".into(),
            RegistryHost {
                fallback_to_origin: false,
                ..host(&["http://127.0.0.1:5000"])
            },
        )]),
    );
    let err = store
        .pull("registry.k8s.io/wasm/hello", None)
        .await
        .unwrap_err();
    assert_eq!(
        fake.manifest_fetches(),
        ["127.0.0.1:5000/wasm/hello:latest"]
    );
    assert!(!crate::registry::error_chain(&err).contains("https://registry.k8s.io"));

    let other_root = tempfile::tempdir().unwrap();
    let store = mirrored(
        other_root.path(),
        &fake,
        BTreeMap::from([(
            "registry.k8s.io".into(),
            RegistryHost {
                fallback_to_origin: false,
                ..RegistryHost::default()
            },
        )]),
    );
    let err = store
        .pull("registry.k8s.io/wasm/hello", None)
        .await
        .unwrap_err();
    assert!(matches!(err, ImageError::Connect { .. }), "{err}");
}

#[tokio::test]
async fn credentials_go_to_the_endpoint_they_belong_to() {
    let root = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::default();
    push_hello(&fake, "private.example/wasm/hello:latest");
    let store = mirrored(
        root.path(),
        &fake,
        BTreeMap::from([
            (
                "private.example".into(),
                RegistryHost {
                    auth: Some(RegistryAuth::basic("config-user", "p")),
                    ..host(&["https://mirror.example"])
                },
            ),
            (
                "mirror.example".into(),
                RegistryHost {
                    auth: Some(RegistryAuth::Bearer { token: "t".into() }),
                    ..RegistryHost::default()
                },
            ),
        ]),
    );
    store
        .pull("private.example/wasm/hello", None)
        .await
        .unwrap();
    store
        .pull(
            "private.example/wasm/hello",
            Some(RegistryAuth::basic("request-user", "p")),
        )
        .await
        .unwrap();
    let principal = |s: &str| Some(s.to_owned());
    assert_eq!(
        fake.opened(),
        [
            (
                "https://mirror.example".to_owned(),
                principal("bearer token")
            ),
            (
                "https://private.example".to_owned(),
                principal("basic:config-user")
            ),
            (
                "https://mirror.example".to_owned(),
                principal("bearer token")
            ),
            (
                "https://private.example".to_owned(),
                principal("basic:request-user")
            ),
        ]
    );
}

#[tokio::test]
async fn plain_http_for_loopback_configured_and_listed_origins() {
    let root = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::default();
    let store = mirrored(
        root.path(),
        &fake,
        BTreeMap::from([(
            "insecure.example".into(),
            RegistryHost {
                insecure: true,
                ..RegistryHost::default()
            },
        )]),
    );
    for reference in [
        "127.0.0.1:5000/a",
        "insecure.example/a",
        "plain.example:80/a",
        "secure.example/a",
    ] {
        let _ = store.pull(reference, None).await;
    }
    let opened: Vec<String> = fake.opened().into_iter().map(|(e, _)| e).collect();
    assert_eq!(
        opened,
        [
            "http://127.0.0.1:5000",
            "http://insecure.example",
            "http://plain.example:80",
            "https://secure.example"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pulls_of_one_reference_share_one_download() {
    let root = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::default();
    let pushed = push_hello(&fake, HELLO);
    fake.stall(&pushed.layers[0]);
    let store = Arc::new(mirrored(root.path(), &fake, BTreeMap::new()));
    let pulls: Vec<_> = (0..3)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.pull(HELLO, None).await })
        })
        .collect();
    fake.reached_stall().await;
    // Give the other two time to join the running pull.
    tokio::time::sleep(Duration::from_millis(50)).await;
    fake.release();
    for pull in pulls {
        assert_eq!(pull.await.unwrap().unwrap().id, pushed.config);
    }
    assert_eq!(fake.manifest_fetches().len(), 1);
    assert_eq!(fake.blob_fetches().len(), 2, "config and layer, once");
    assert!(store.inflight.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_pull_records_nothing_and_a_waiting_caller_takes_over() {
    let root = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::default();
    let pushed = push_hello(&fake, HELLO);
    fake.stall(&pushed.layers[0]);
    let store = Arc::new(mirrored(root.path(), &fake, BTreeMap::new()));

    // Alone: the cancelled pull leaves no record, no temp file, no rootfs.
    let first = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.pull(HELLO, None).await })
    };
    fake.reached_stall().await;
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    assert!(store.list().is_empty());
    let tmp = std::fs::read_dir(root.path().join("tmp")).unwrap().count();
    assert_eq!(tmp, 0);
    assert_eq!(
        std::fs::read_dir(root.path().join("rootfs"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(root.path().join("records"))
            .unwrap()
            .count(),
        0
    );
    assert!(store.inflight.is_empty());

    // With a follower: it takes over when the leader goes away.
    let leader = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.pull(HELLO, None).await })
    };
    fake.reached_stall().await;
    let follower = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.pull(HELLO, None).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    leader.abort();
    fake.reached_stall().await;
    fake.release();
    let image = follower.await.unwrap().unwrap();
    assert_eq!(image.id, pushed.config);
    assert_eq!(store.list().len(), 1);
    assert_eq!(fake.manifest_fetches().len(), 3, "first, leader, follower");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_share_the_leaders_error() {
    let root = tempfile::tempdir().unwrap();
    let fake = FakeRegistry::default();
    let pushed = push_hello(&fake, HELLO);
    fake.tamper(&pushed.layers[0], vec![0x42; 8]);
    fake.stall(&pushed.layers[0]);
    let store = Arc::new(mirrored(root.path(), &fake, BTreeMap::new()));
    let pulls: Vec<_> = (0..2)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.pull(HELLO, None).await })
        })
        .collect();
    fake.reached_stall().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    fake.release();
    let mut messages = Vec::new();
    for pull in pulls {
        let err = pull.await.unwrap().unwrap_err();
        assert!(matches!(err, ImageError::Shared(_)), "{err}");
        messages.push(err.to_string());
    }
    assert_eq!(messages[0], messages[1]);
    assert_eq!(fake.manifest_fetches().len(), 1);
}
