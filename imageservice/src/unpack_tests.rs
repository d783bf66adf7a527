//! Unpack tests with hand-crafted (and hostile) tar streams.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use tar::{EntryType, Header};

use super::*;

/// Builds tars byte by byte so entry names are not sanitised by the tar crate's builder.
#[derive(Default)]
struct RawTar {
    builder: Option<tar::Builder<Vec<u8>>>,
}

impl RawTar {
    fn entry(mut self, name: &str, kind: EntryType, link: &str, mode: u32, data: &[u8]) -> Self {
        let builder = self
            .builder
            .get_or_insert_with(|| tar::Builder::new(Vec::new()));
        let mut header = Header::new_gnu();
        let gnu = header.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        gnu.linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(data.len() as u64);
        header.set_cksum();
        builder.append(&header, data).unwrap();
        self
    }

    fn file(self, name: &str, data: &[u8]) -> Self {
        self.entry(name, EntryType::Regular, "", 0o644, data)
    }

    fn dir(self, name: &str) -> Self {
        self.entry(name, EntryType::Directory, "", 0o755, b"")
    }

    fn symlink(self, name: &str, target: &str) -> Self {
        self.entry(name, EntryType::Symlink, target, 0o777, b"")
    }

    fn hardlink(self, name: &str, target: &str) -> Self {
        self.entry(name, EntryType::Link, target, 0o644, b"")
    }

    fn finish(mut self) -> Vec<u8> {
        self.builder
            .take()
            .unwrap_or_else(|| tar::Builder::new(Vec::new()))
            .into_inner()
            .unwrap()
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// A temp dir holding `root/` (the rootfs) and the layer blobs next to it.
struct Fixture {
    dir: tempfile::TempDir,
    layers: Vec<LayerSource>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("root")).unwrap();
        Fixture {
            dir,
            layers: Vec::new(),
        }
    }

    fn root(&self) -> std::path::PathBuf {
        self.dir.path().join("root")
    }

    /// Adds a layer (gzipped or not) with its diff id.
    fn layer(mut self, tar: Vec<u8>, compress: bool) -> Self {
        let diff_id = Digest::of(&tar);
        let blob = if compress { gzip(&tar) } else { tar };
        let digest = Digest::of(&blob);
        let path = self.dir.path().join(digest.hex());
        fs::write(&path, blob).unwrap();
        self.layers.push(LayerSource {
            path,
            digest,
            diff_id: Some(diff_id),
            kind: LayerKind::Tar,
        });
        self
    }

    /// Adds a raw Wasm layer placed as `/<name>`.
    fn wasm(mut self, bytes: &[u8], name: &str) -> Self {
        let digest = Digest::of(bytes);
        let path = self.dir.path().join(digest.hex());
        fs::write(&path, bytes).unwrap();
        self.layers.push(LayerSource {
            path,
            digest: digest.clone(),
            diff_id: Some(digest),
            kind: LayerKind::Wasm {
                file_name: name.to_owned(),
                media_type: "application/wasm".to_owned(),
            },
        });
        self
    }

    fn unpack(&self) -> Result<(), ImageError> {
        unpack_layers(&self.layers, &self.root(), &AtomicBool::new(false))
    }

    /// Everything in the temp dir apart from the rootfs and the layer blobs.
    fn strays(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "root" && n.len() != 64)
            .collect();
        names.sort();
        names
    }
}

fn unsafe_reason(result: Result<(), ImageError>) -> &'static str {
    match result {
        Err(ImageError::UnsafeLayerEntry { reason, .. }) => reason,
        other => panic!("expected an unsafe entry error, got {other:?}"),
    }
}

#[test]
fn unpacks_gzip_and_plain_layers_in_order() {
    let one = RawTar::default()
        .dir("app/")
        .file("app/hello.wasm", b"\0asm")
        .file("./etc/motd", b"one")
        .finish();
    let two = RawTar::default().file("etc/motd", b"two").finish();
    let fx = Fixture::new().layer(one, true).layer(two, false);
    fx.unpack().unwrap();
    assert_eq!(
        fs::read(fx.root().join("app/hello.wasm")).unwrap(),
        b"\0asm"
    );
    assert_eq!(fs::read(fx.root().join("etc/motd")).unwrap(), b"two");
}

#[test]
fn parent_dir_escape_is_refused() {
    let fx = Fixture::new().layer(RawTar::default().file("../x", b"pwned").finish(), true);
    assert_eq!(unsafe_reason(fx.unpack()), "path contains `..`");
    let fx = Fixture::new().layer(RawTar::default().file("a/../../x", b"pwned").finish(), true);
    assert_eq!(unsafe_reason(fx.unpack()), "path contains `..`");
    assert!(fx.strays().is_empty(), "{:?}", fx.strays());
}

#[test]
fn absolute_paths_are_refused() {
    let fx = Fixture::new().layer(
        RawTar::default().file("/etc/passwd", b"pwned").finish(),
        true,
    );
    assert_eq!(unsafe_reason(fx.unpack()), "path is absolute");
}

#[test]
fn escaping_symlinks_are_refused() {
    let fx = Fixture::new().layer(
        RawTar::default().symlink("evil", "../../etc").finish(),
        true,
    );
    assert_eq!(
        unsafe_reason(fx.unpack()),
        "symlink target escapes the rootfs"
    );
    let fx = Fixture::new().layer(
        RawTar::default().symlink("a/b/evil", "../../../x").finish(),
        true,
    );
    assert_eq!(
        unsafe_reason(fx.unpack()),
        "symlink target escapes the rootfs"
    );
}

#[test]
fn absolute_symlinks_become_relative() {
    let tar = RawTar::default()
        .symlink("lib", "/usr/lib")
        .symlink("usr/bin/sh", "/bin/busybox")
        .finish();
    let fx = Fixture::new().layer(tar, true);
    fx.unpack().unwrap();
    assert_eq!(
        fs::read_link(fx.root().join("lib")).unwrap(),
        Path::new("usr/lib")
    );
    assert_eq!(
        fs::read_link(fx.root().join("usr/bin/sh")).unwrap(),
        Path::new("../../bin/busybox")
    );
}

#[test]
fn writes_through_symlinked_parents_stay_inside() {
    // `d/l` points at the rootfs itself (allowed), so `x` → `d/l/..` looks harmless lexically but
    // resolves above the rootfs on a real filesystem. Writes through it must still land inside.
    let one = RawTar::default()
        .dir("d/")
        .symlink("d/l", "..")
        .symlink("x", "d/l/..")
        .symlink("abs", "/outside")
        .finish();
    let two = RawTar::default()
        .file("x/pwned", b"1")
        .file("abs/pwned", b"2")
        .finish();
    let fx = Fixture::new().layer(one, true).layer(two, true);
    fx.unpack().unwrap();
    assert_eq!(fs::read(fx.root().join("pwned")).unwrap(), b"1");
    assert_eq!(fs::read(fx.root().join("outside/pwned")).unwrap(), b"2");
    assert!(fx.strays().is_empty(), "{:?}", fx.strays());
}

#[test]
fn hard_links_stay_inside() {
    let tar = RawTar::default()
        .file("a", b"data")
        .hardlink("b", "a")
        .finish();
    let fx = Fixture::new().layer(tar, true);
    fx.unpack().unwrap();
    let (a, b) = (
        fs::metadata(fx.root().join("a")).unwrap(),
        fs::metadata(fx.root().join("b")).unwrap(),
    );
    assert_eq!(a.ino(), b.ino());

    let fx = Fixture::new().layer(RawTar::default().hardlink("b", "../outside").finish(), true);
    assert_eq!(unsafe_reason(fx.unpack()), "path contains `..`");
    let fx = Fixture::new().layer(
        RawTar::default().hardlink("b", "/etc/passwd").finish(),
        true,
    );
    assert_eq!(unsafe_reason(fx.unpack()), "path is absolute");
}

#[test]
fn whiteouts_remove_lower_entries() {
    let one = RawTar::default()
        .file("a/f1", b"1")
        .file("a/f2", b"2")
        .file("b/g", b"3")
        .finish();
    let two = RawTar::default()
        .file("a/.wh.f1", b"")
        .file(".wh.b", b"")
        .file("missing/.wh.x", b"")
        .finish();
    let fx = Fixture::new().layer(one, true).layer(two, true);
    fx.unpack().unwrap();
    assert!(!fx.root().join("a/f1").exists());
    assert!(fx.root().join("a/f2").exists());
    assert!(!fx.root().join("b").exists());
    assert!(!fx.root().join("a/.wh.f1").exists());
    assert!(!fx.root().join("missing").exists());
}

#[test]
fn opaque_whiteout_hides_lower_directory_content() {
    let one = RawTar::default().file("d/old", b"1").finish();
    let two = RawTar::default()
        .file("d/new", b"2")
        .file("d/.wh..wh..opq", b"")
        .finish();
    let fx = Fixture::new().layer(one, true).layer(two, true);
    fx.unpack().unwrap();
    assert!(!fx.root().join("d/old").exists());
    assert!(fx.root().join("d/new").exists());
    assert!(!fx.root().join("d/.wh..wh..opq").exists());
}

#[test]
fn whiteout_of_dot_dot_is_refused() {
    let fx = Fixture::new().layer(RawTar::default().file("a/.wh...", b"").finish(), true);
    assert_eq!(unsafe_reason(fx.unpack()), "whiteout names no entry");
}

#[test]
fn devices_are_skipped_and_setuid_dropped() {
    let tar = RawTar::default()
        .entry("dev/null", EntryType::Char, "", 0o666, b"")
        .entry("fifo", EntryType::Fifo, "", 0o644, b"")
        .entry("suid", EntryType::Regular, "", 0o4755, b"x")
        .finish();
    let fx = Fixture::new().layer(tar, true);
    fx.unpack().unwrap();
    assert!(!fx.root().join("dev/null").exists());
    assert!(!fx.root().join("fifo").exists());
    let mode = fs::metadata(fx.root().join("suid"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755);
}

#[test]
fn diff_id_mismatch_is_detected() {
    let mut fx = Fixture::new().layer(RawTar::default().file("a", b"1").finish(), true);
    fx.layers[0].diff_id = Some(Digest::of(b"something else"));
    assert!(matches!(
        fx.unpack(),
        Err(ImageError::DiffIdMismatch { .. })
    ));
}

#[test]
fn file_replaces_directory_and_directory_replaces_file() {
    let one = RawTar::default()
        .file("x/inner", b"1")
        .file("y", b"2")
        .finish();
    let two = RawTar::default().file("x", b"3").dir("y/").finish();
    let fx = Fixture::new().layer(one, true).layer(two, true);
    fx.unpack().unwrap();
    assert_eq!(fs::read(fx.root().join("x")).unwrap(), b"3");
    assert!(fx.root().join("y").is_dir());
}

#[test]
fn raw_wasm_layers_become_files_replacing_lower_content() {
    let u = Fixture::new()
        .layer(
            RawTar::default()
                .dir("app.wasm/")
                .file("app.wasm/x", b"x")
                .finish(),
            true,
        )
        .wasm(b"\0asm\x01\0\0\0", "app.wasm")
        .wasm(b"\0asm\x0d\0\x01\0", "other.wasm");
    u.unpack().unwrap();
    let root = u.root();
    assert_eq!(fs::read(root.join("app.wasm")).unwrap(), b"\0asm\x01\0\0\0");
    assert_eq!(
        fs::read(root.join("other.wasm")).unwrap(),
        b"\0asm\x0d\0\x01\0"
    );
    let mode = fs::metadata(root.join("app.wasm"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
}

#[test]
fn a_wasm_layer_that_is_not_wasm_is_refused() {
    let u = Fixture::new().wasm(b"#!/bin/sh\n", "app.wasm");
    let err = u.unpack().unwrap_err();
    assert!(
        matches!(err, ImageError::NotWasm { ref media_type, .. } if media_type == "application/wasm"),
        "{err}"
    );
    let short = Fixture::new().wasm(b"\0a", "app.wasm");
    assert!(matches!(
        short.unpack().unwrap_err(),
        ImageError::NotWasm { .. }
    ));
}

#[test]
fn unpacking_stops_when_cancelled() {
    let u = Fixture::new().layer(RawTar::default().file("a", b"a").finish(), false);
    let err = unpack_layers(&u.layers, &u.root(), &AtomicBool::new(true)).unwrap_err();
    assert!(matches!(err, ImageError::Cancelled { .. }), "{err}");
}
