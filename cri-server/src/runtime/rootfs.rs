//! A container's root filesystem: a private copy of the image's files (so writes never reach the shared,
//! read-only image). Path resolution inside it is `podsandbox::guest_path` (the pod process resolves exec
//! programs the same way).

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub use podsandbox::guest_path::find_program;

/// Copies the tree at `src` to `dst` (which must not exist), keeping symlinks as symlinks, hard links as hard
/// links (within the tree) and file modes.
///
/// Hard links matter: images link their applets to one busybox binary, and masking one of them (a `/dev/null`
/// bind over its path, as runc does for `masked_paths`) must hide only that name. Copies that share an inode
/// also keep the pod process's per-inode program cache to one compilation.
pub fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    copy_dir(src, dst, &mut HashMap::new())
}

/// `copied` maps the (device, inode) of each multiply-linked source file to its first copy.
fn copy_dir(
    src: &Path,
    dst: &Path,
    copied: &mut HashMap<(u64, u64), PathBuf>,
) -> std::io::Result<()> {
    fs::create_dir_all(dst)?;
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let ty = entry.file_type()?;
        if ty.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&from)?, &to)?;
        } else if ty.is_dir() {
            copy_dir(&from, &to, copied)?;
            fs::set_permissions(&to, fs::metadata(&from)?.permissions())?;
        } else if ty.is_file() {
            let meta = entry.metadata()?;
            if meta.nlink() < 2 {
                fs::copy(&from, &to)?;
            } else if let Some(first) = copied.get(&(meta.dev(), meta.ino())) {
                fs::hard_link(first, &to)?;
            } else {
                fs::copy(&from, &to)?;
                copied.insert((meta.dev(), meta.ino()), to);
            }
        }
        // Devices, sockets and fifos are not copied: a Wasm guest cannot use them.
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn copy_keeps_symlinks_and_content() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        fs::create_dir_all(src.join("a")).unwrap();
        fs::write(src.join("a/f"), b"x").unwrap();
        std::os::unix::fs::symlink("a/f", src.join("l")).unwrap();
        let dst = d.path().join("dst");
        copy_tree(&src, &dst).unwrap();
        assert_eq!(fs::read(dst.join("a/f")).unwrap(), b"x");
        assert_eq!(fs::read_link(dst.join("l")).unwrap(), Path::new("a/f"));
    }

    #[test]
    fn copy_keeps_hard_links_within_the_tree() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        fs::create_dir_all(src.join("bin")).unwrap();
        fs::create_dir_all(src.join("sbin")).unwrap();
        fs::write(src.join("bin/busybox"), b"x").unwrap();
        fs::hard_link(src.join("bin/busybox"), src.join("bin/ls")).unwrap();
        fs::hard_link(src.join("bin/busybox"), src.join("sbin/init")).unwrap();
        fs::write(src.join("bin/other"), b"y").unwrap();
        let dst = d.path().join("dst");
        copy_tree(&src, &dst).unwrap();
        let ino = |p: &str| fs::metadata(dst.join(p)).unwrap().ino();
        assert_eq!(ino("bin/busybox"), ino("bin/ls"));
        assert_eq!(ino("bin/busybox"), ino("sbin/init"));
        assert_ne!(ino("bin/busybox"), ino("bin/other"));
        // A copy, not a link to the source: the image stays untouched by container writes.
        assert_ne!(
            ino("bin/busybox"),
            fs::metadata(src.join("bin/busybox")).unwrap().ino()
        );
        assert_eq!(fs::metadata(dst.join("bin/ls")).unwrap().nlink(), 3);
        assert_eq!(fs::read(dst.join("bin/ls")).unwrap(), b"x");
    }
}
