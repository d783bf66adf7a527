//! The image store under stress, end to end through crictl: a registry serving a tampered blob, a
//! daemon killed in the middle of a pull, concurrent pulls and removes, garbage collection at
//! remove and at open, and removing an image that a running container uses.
//!
//! After each scenario the store on disk is checked as a whole ([`check_store`]): no temp files,
//! every blob a record names is present, no blob or rootfs that no record names.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use conformance::crictl::{container_state, wait_until};
use conformance::critest_images::busybox_spec;
use conformance::fixtures::{fixture_path, fixtures_dir};
use conformance::image::{build_image, sha256_digest};
use conformance::{
    ContainerConfig, Daemon, DaemonOpts, ImageSpec, LayerEntry, Registry, require_root,
};

/// What the store holds, read from disk.
#[derive(Debug, PartialEq, Eq)]
pub struct StoreContent {
    /// Image ids with a record.
    pub images: BTreeSet<String>,
    /// `sha256:<hex>` of every blob some record names (all present).
    pub blobs: BTreeSet<String>,
    /// Verified blobs no record names: what a failed pull stored before it failed, kept for a
    /// retry and swept when the store is next opened.
    pub unreferenced: BTreeSet<String>,
}

impl StoreContent {
    /// No image, no blob.
    pub fn is_empty(&self) -> bool {
        self.images.is_empty() && self.blobs.is_empty() && self.unreferenced.is_empty()
    }
}

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

fn is_digest_hex(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Checks the store of a daemon whose root is `root` as a whole and returns what it holds:
/// `tmp/` is empty, every blob's content hashes to its name, every blob a record lists exists,
/// every rootfs belongs to a record.
pub fn check_store(root: &Path) -> StoreContent {
    let store = root.join("images");
    assert_eq!(names(&store.join("tmp")), BTreeSet::new(), "temp leftovers");
    let mut images = BTreeSet::new();
    let mut referenced = BTreeSet::new();
    for name in names(&store.join("records")) {
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(store.join("records").join(&name)).unwrap())
                .unwrap();
        let id = record["image"]["id"].as_str().unwrap().to_owned();
        assert_eq!(name, format!("{}.json", &id[7..]));
        for blob in record["blobs"].as_array().unwrap() {
            referenced.insert(blob.as_str().unwrap().to_owned());
        }
        images.insert(id);
    }
    let blobs_dir = store.join("blobs/sha256");
    let on_disk: BTreeSet<String> = names(&blobs_dir)
        .into_iter()
        .filter(|n| is_digest_hex(n))
        .map(|n| {
            let bytes = std::fs::read(blobs_dir.join(&n)).unwrap();
            let digest = format!("sha256:{n}");
            assert_eq!(sha256_digest(&bytes), digest, "a stored blob is corrupt");
            digest
        })
        .collect();
    let missing: Vec<_> = referenced.difference(&on_disk).collect();
    assert!(
        missing.is_empty(),
        "blobs records name but the store lacks: {missing:?}"
    );
    let rootfs: BTreeSet<String> = names(&store.join("rootfs"))
        .into_iter()
        .map(|n| format!("sha256:{n}"))
        .collect();
    assert_eq!(rootfs, images, "rootfs dirs vs records");
    StoreContent {
        images,
        unreferenced: on_disk.difference(&referenced).cloned().collect(),
        blobs: referenced,
    }
}

fn hello() -> PathBuf {
    fixture_path(fixtures_dir().unwrap(), "hello")
}

/// The hello module as entrypoint plus `extra` bytes at `/data.bin` (so images can share the
/// hello layer or not) and a label making the config unique.
fn spec_with(label: &str, extra: Option<Vec<u8>>) -> ImageSpec {
    let mut spec = ImageSpec::single(hello(), "/hello.wasm");
    spec.labels.insert("test".into(), label.into());
    if let Some(bytes) = extra {
        spec.entries.push(LayerEntry::data("/data.bin", bytes));
    }
    spec
}

/// `n` bytes gzip cannot shrink (xorshift), so a layer really is `n` bytes on the wire.
fn incompressible(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The registry's file holding blob `digest` (docker-registry's filesystem driver layout).
fn registry_blob_file(reg: &Registry, digest: &str) -> PathBuf {
    let hex = &digest[7..];
    reg.dir()
        .join("storage/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

fn crictl_err(d: &Daemon, args: &[&str]) -> String {
    let out = d.crictl(args).unwrap();
    assert!(!out.status.success(), "crictl {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_tampered_registry_blob_fails_naming_it_and_leaves_nothing() {
    let reg = Registry::start().unwrap();
    let spec = spec_with("tampered", Some(incompressible(64 << 10, 7)));
    reg.push("wasm/tampered:1", &spec).unwrap();
    let layer = sha256_digest(&build_image(&spec).unwrap().layer);
    let file = registry_blob_file(&reg, &layer);
    let good = std::fs::read(&file).unwrap();
    // One flipped byte, same size: only the digest can tell.
    let mut evil = good.clone();
    let middle = evil.len() / 2;
    evil[middle] ^= 0xff;
    std::fs::write(&file, &evil).unwrap();

    let mut d = Daemon::start(DaemonOpts::with_registry(reg.addr())).unwrap();
    let reference = reg.image_ref("wasm/tampered:1");
    let err = crictl_err(&d, &["pull", &reference]);
    assert!(
        err.contains(&format!("expected {layer}")) && err.contains("digest mismatch"),
        "{err}"
    );
    // No record, no trace of the bad layer; the manifest and config it verified stay for a retry.
    let content = check_store(&d.root());
    assert!(
        content.images.is_empty() && content.blobs.is_empty(),
        "{content:?}"
    );
    assert!(!content.unreferenced.contains(&layer), "{content:?}");
    assert_eq!(content.unreferenced.len(), 2, "{content:?}");

    // The registry repaired: the next pull completes, reusing them.
    std::fs::write(&file, &good).unwrap();
    d.pull(&reference).unwrap();
    let content = check_store(&d.root());
    assert_eq!(content.images.len(), 1);
    assert!(content.blobs.contains(&layer) && content.unreferenced.is_empty());

    // A failure that is never retried: its blobs go when the store is next opened.
    let other = spec_with("tampered-2", Some(incompressible(64 << 10, 8)));
    reg.push("wasm/tampered:2", &other).unwrap();
    let other_layer = sha256_digest(&build_image(&other).unwrap().layer);
    let other_file = registry_blob_file(&reg, &other_layer);
    let mut bad = std::fs::read(&other_file).unwrap();
    bad[100] ^= 1;
    std::fs::write(&other_file, bad).unwrap();
    crictl_err(&d, &["pull", &reg.image_ref("wasm/tampered:2")]);
    assert_eq!(check_store(&d.root()).unreferenced.len(), 2);
    d.restart().unwrap();
    let content = check_store(&d.root());
    assert!(
        content.unreferenced.is_empty() && content.images.len() == 1,
        "{content:?}"
    );
}

/// A loopback TCP proxy in front of `upstream` that, while `slow` is set, passes at most 16 KiB
/// per 10 ms from the registry to the client (about 1.6 MB/s).
struct SlowProxy {
    addr: String,
    slow: Arc<AtomicBool>,
}

impl SlowProxy {
    fn start(upstream: &str) -> SlowProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let slow = Arc::new(AtomicBool::new(true));
        let (upstream, flag) = (upstream.to_owned(), Arc::clone(&slow));
        // Lives as long as the test process; each connection gets two pump threads.
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || pump(c2, s2, None));
                let flag = Arc::clone(&flag);
                std::thread::spawn(move || pump(server, client, Some(flag)));
            }
        });
        SlowProxy { addr, slow }
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, slow: Option<Arc<AtomicBool>>) {
    let mut buf = vec![0u8; 16 << 10];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        if slow.as_ref().is_some_and(|s| s.load(Ordering::Relaxed)) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// Size of the largest `blob-*` download under the store's `tmp/`.
fn largest_download(root: &Path) -> u64 {
    let tmp = root.join("images/tmp");
    std::fs::read_dir(&tmp)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("blob-"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

#[test]
fn a_pull_killed_midway_is_completed_by_the_next_pull() {
    let reg = Registry::start().unwrap();
    let spec = spec_with("big", Some(incompressible(8 << 20, 11)));
    reg.push("wasm/big:1", &spec).unwrap();
    let layer = sha256_digest(&build_image(&spec).unwrap().layer);
    let proxy = SlowProxy::start(reg.addr());
    // Loopback registries are plain HTTP without configuration.
    let reference = format!("{}/wasm/big:1", proxy.addr);

    let mut d = Daemon::start(DaemonOpts::default()).unwrap();
    let endpoint = d.endpoint();
    let pull = {
        let reference = reference.clone();
        std::thread::spawn(move || conformance::crictl(&endpoint, ["pull", &reference]))
    };
    wait_until(
        "the layer download is under way",
        Duration::from_secs(60),
        || Ok(largest_download(&d.root()) > 1 << 20),
    )
    .unwrap();
    d.kill().unwrap();
    let out = pull.join().unwrap().unwrap();
    assert!(
        !out.status.success(),
        "the pull cannot finish without its daemon"
    );
    // The crash left a partial download behind, and no blob or record of it.
    assert!(largest_download(&d.root()) > 0);
    assert!(
        !d.root()
            .join("images/blobs/sha256")
            .join(&layer[7..])
            .exists()
    );

    proxy.slow.store(false, Ordering::Relaxed);
    d.restart().unwrap();
    // Opening the store removed the partial download.
    let content = check_store(&d.root());
    assert!(content.is_empty(), "{content:?}");
    d.pull(&reference).unwrap();
    let content = check_store(&d.root());
    assert_eq!(content.images.len(), 1);
    assert!(content.blobs.contains(&layer) && content.unreferenced.is_empty());
    let listed = d.crictl_ok(["images", "-q"]).unwrap();
    assert!(
        content.images.iter().all(|id| listed.contains(id.as_str())),
        "{listed}"
    );
}

#[test]
fn concurrent_pulls_and_removes_keep_the_store_consistent() {
    let reg = Registry::start().unwrap();
    // a and b share their layer (same files) but not their config; c shares nothing.
    let shared = incompressible(256 << 10, 3);
    let refs: Vec<String> = [
        ("wasm/a:1", spec_with("a", Some(shared.clone()))),
        ("wasm/b:1", {
            let mut spec = spec_with("a", Some(shared));
            spec.env.push("B=1".into());
            spec
        }),
        (
            "wasm/c:1",
            spec_with("c", Some(incompressible(256 << 10, 5))),
        ),
    ]
    .iter()
    .map(|(name, spec)| {
        reg.push(name, spec).unwrap();
        reg.image_ref(name)
    })
    .collect();
    let mut d = Daemon::start(DaemonOpts::with_registry(reg.addr())).unwrap();

    let workers: Vec<_> = (0..4)
        .map(|w| {
            let (endpoint, refs) = (d.endpoint(), refs.clone());
            std::thread::spawn(move || {
                for i in 0..8 {
                    let reference = &refs[(w + i) % refs.len()];
                    // Workers 0 and 1 pull, 2 and 3 mostly remove: every image is pulled and
                    // removed concurrently with pulls and removes of itself and the others.
                    let op = if (w < 2) ^ (i % 3 == 2) {
                        "pull"
                    } else {
                        "rmi"
                    };
                    let out = conformance::crictl(&endpoint, [op, reference.as_str()]).unwrap();
                    // RemoveImage of an absent image succeeds too (crictl rmi itself may
                    // complain it found no such image, which is its lookup, not ours).
                    if op == "pull" {
                        assert!(
                            out.status.success(),
                            "{op} {reference}: {}",
                            String::from_utf8_lossy(&out.stderr)
                        );
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let during = check_store(&d.root());
    assert!(during.unreferenced.is_empty(), "{during:?}");

    for reference in &refs {
        d.pull(reference).unwrap();
    }
    let all = check_store(&d.root());
    assert_eq!(all.images.len(), 3);
    assert!(during.images.is_subset(&all.images));
    // A restart keeps exactly that (nothing referenced is swept, nothing unreferenced stays).
    d.restart().unwrap();
    assert_eq!(check_store(&d.root()), all);
    for reference in &refs {
        d.crictl_ok(["rmi", reference]).unwrap();
    }
    let empty = check_store(&d.root());
    assert!(empty.is_empty(), "{empty:?}");
}

#[test]
fn gc_removes_what_no_image_references_at_remove_and_at_open() {
    let reg = Registry::start().unwrap();
    let shared = incompressible(64 << 10, 9);
    let a_spec = spec_with("gc", Some(shared.clone()));
    let mut b_spec = spec_with("gc", Some(shared));
    b_spec.env.push("B=1".into());
    let shared_layer = sha256_digest(&build_image(&a_spec).unwrap().layer);
    assert_eq!(
        shared_layer,
        sha256_digest(&build_image(&b_spec).unwrap().layer)
    );
    reg.push("wasm/gc-a:1", &a_spec).unwrap();
    reg.push("wasm/gc-b:1", &b_spec).unwrap();
    let (a, b) = (reg.image_ref("wasm/gc-a:1"), reg.image_ref("wasm/gc-b:1"));
    let mut d = Daemon::start(DaemonOpts::with_registry(reg.addr())).unwrap();
    d.pull(&a).unwrap();
    let only_a = check_store(&d.root());
    d.pull(&b).unwrap();
    let both = check_store(&d.root());
    assert_eq!(
        both.blobs.len(),
        only_a.blobs.len() + 2,
        "b adds a manifest and a config"
    );

    d.crictl_ok(["rmi", &a]).unwrap();
    let only_b = check_store(&d.root());
    assert_eq!(only_b.images.len(), 1);
    assert!(
        only_b.blobs.contains(&shared_layer),
        "b still uses the layer"
    );
    assert_eq!(only_b.blobs.len(), 3);
    assert!(only_a.blobs.intersection(&only_b.blobs).eq([&shared_layer]));

    // Content a crash left without a record is swept when the store opens.
    d.stop().unwrap();
    let store = d.root().join("images");
    let orphan_blob = store.join("blobs/sha256").join("f".repeat(64));
    let orphan_rootfs = store.join("rootfs").join("e".repeat(64));
    std::fs::write(&orphan_blob, b"orphan").unwrap();
    std::fs::create_dir(&orphan_rootfs).unwrap();
    std::fs::write(store.join("tmp/blob-stale"), b"partial").unwrap();
    d.restart().unwrap();
    assert!(!orphan_blob.exists() && !orphan_rootfs.exists());
    assert_eq!(check_store(&d.root()), only_b);

    d.crictl_ok(["rmi", &b]).unwrap();
    let empty = check_store(&d.root());
    assert!(empty.is_empty(), "{empty:?}");
}

#[test]
fn root_removing_an_image_in_use_keeps_its_container_working() {
    require_root!();
    let reg = Registry::start().unwrap();
    let toolbox = fixture_path(fixtures_dir().unwrap(), "toolbox");
    reg.push("wasm/busybox:1", &busybox_spec(&toolbox, "busybox"))
        .unwrap();
    let image = reg.image_ref("wasm/busybox:1");
    let mut d = Daemon::start(DaemonOpts::with_registry(reg.addr())).unwrap();
    d.pull(&image).unwrap();
    let image_id = d.crictl_ok(["images", "-q", &image]).unwrap();
    let pod = d.pod_config("in-use");
    let pod_id = d.run_pod(&pod).unwrap();
    let c = ContainerConfig::new("sleeper", &image).command(["sleep", "3600"]);
    let id = d.create_container(&pod_id, &c, &pod).unwrap();
    d.start_container(&id).unwrap();
    wait_until("container runs", Duration::from_secs(120), || {
        Ok(container_state(&d.endpoint(), &id)? == "CONTAINER_RUNNING")
    })
    .unwrap();

    // containerd's behaviour: the record goes, the container keeps what it has.
    d.crictl_ok(["rmi", &image]).unwrap();
    let listed = d.crictl_ok(["images", "-q"]).unwrap();
    assert!(!listed.contains(image_id.trim()), "{listed}");
    let content = check_store(&d.root());
    assert!(content.is_empty(), "{content:?}");
    // The container runs on its private copy of the image's files.
    let copy = d
        .root()
        .join("containers")
        .join(&id)
        .join("rootfs/bin/busybox");
    assert!(copy.is_file(), "{}", copy.display());
    assert_eq!(
        container_state(&d.endpoint(), &id).unwrap(),
        "CONTAINER_RUNNING"
    );
    let out = d
        .crictl_ok(["exec", "-s", &id, "sh", "-c", "echo alive; ls /bin/busybox"])
        .unwrap();
    assert_eq!(out.trim(), "alive\n/bin/busybox", "{out}");

    // It survives a daemon restart, and stops and is inspected as usual.
    d.restart().unwrap();
    assert_eq!(
        container_state(&d.endpoint(), &id).unwrap(),
        "CONTAINER_RUNNING"
    );
    let out = d.crictl_ok(["exec", "-s", &id, "echo", "still"]).unwrap();
    assert_eq!(out.trim(), "still");
    d.crictl_ok(["stop", &id]).unwrap();
    assert_eq!(
        container_state(&d.endpoint(), &id).unwrap(),
        "CONTAINER_EXITED"
    );

    // A new container needs the image: it is gone, and the error says so.
    let again = ContainerConfig::new("again", &image).command(["true"]);
    let err = d.create_container(&pod_id, &again, &pod).unwrap_err();
    assert!(
        format!("{err:#}").contains("not found") || format!("{err:#}").contains("NotFound"),
        "{err:#}"
    );
    d.crictl_ok(["rm", &id]).unwrap();
    d.crictl_ok(["stopp", &pod_id]).unwrap();
    d.crictl_ok(["rmp", &pod_id]).unwrap();
}
