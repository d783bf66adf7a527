//! Asking the kernel whether a guest path lies on a read-only filesystem.
//!
//! [`p1_rofs`](super::p1_rofs) calls this only after wasmtime-wasi answered a mutating call with `EIO`, to tell
//! the kernel's `EROFS` (which wasmtime-wasi 48 cannot name) from a real I/O error. The answer only ever turns
//! one error code into another, so a wrong "no" costs the guest the better message, never access.

use std::os::fd::OwnedFd;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, open, openat2};
use nix::sys::stat::Mode;
use nix::sys::statvfs::{FsFlags, fstatvfs};

/// Whether the nearest existing ancestor of `rel` (a guest path relative to the host directory `root`, itself
/// included) sits on a mount the kernel holds read-only.
///
/// The nearest existing ancestor is what the kernel checked: the file itself when it exists (a write to it, a
/// timestamp change), else the directory an entry would be created in. Resolution stays inside `root`
/// (`RESOLVE_IN_ROOT`), as the guest's own did, so a symlink in the container's tree never reaches the host's.
pub fn on_read_only_fs(root: &Path, rel: &str) -> bool {
    let Ok(root) = open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) else {
        return false;
    };
    let parts = normalize(rel);
    for n in (0..=parts.len()).rev() {
        let candidate = if n == 0 {
            ".".to_owned()
        } else {
            parts[..n].join("/")
        };
        match open_in_root(&root, &candidate) {
            Ok(fd) => {
                return fstatvfs(&fd).is_ok_and(|st| st.flags().contains(FsFlags::ST_RDONLY));
            }
            // Not there (yet): the kernel looked at the directory above.
            Err(Errno::ENOENT | Errno::ENOTDIR) => continue,
            Err(_) => return false,
        }
    }
    false
}

/// `rel`'s components with `.` dropped and `..` applied lexically, never above the root (as `RESOLVE_IN_ROOT`
/// treats them).
fn normalize(rel: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    for part in rel.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts
}

fn open_in_root(root: &OwnedFd, rel: &str) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(root, rel, how)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn normalize_applies_dot_dot_without_leaving_the_root() {
        assert_eq!(normalize("a/./b/../c"), ["a", "c"]);
        assert_eq!(normalize("../../x"), ["x"]);
        assert_eq!(normalize(""), Vec::<&str>::new());
        assert_eq!(normalize("/a//b/"), ["a", "b"]);
    }

    #[test]
    fn a_writable_directory_is_not_read_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        assert!(!on_read_only_fs(dir.path(), "d/new/file"));
        assert!(!on_read_only_fs(dir.path(), "."));
    }

    #[test]
    fn a_missing_root_is_not_read_only() {
        assert!(!on_read_only_fs(Path::new("/no/such/dir"), "x"));
    }

    #[test]
    fn a_symlink_resolves_inside_the_root() {
        // /proc is never read-only as a whole, /sys on some hosts is; a symlink to "/" must mean the root itself.
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/", dir.path().join("up")).unwrap();
        assert!(!on_read_only_fs(dir.path(), "up/new"));
    }

    /// The probe agrees with the kernel on a real read-only bind mount (needs root to mount).
    #[test]
    fn root_a_read_only_bind_mount_is_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let ro = dir.path().join("ro");
        std::fs::create_dir_all(ro.join("sub")).unwrap();
        super::super::test_mounts::in_private_mount_ns(|| {
            super::super::test_mounts::bind_read_only(&ro);
            assert!(on_read_only_fs(dir.path(), "ro/sub/new"));
            assert!(on_read_only_fs(dir.path(), "ro/../ro/new"));
            assert!(on_read_only_fs(dir.path(), "ro"));
            assert!(!on_read_only_fs(dir.path(), "new"));
            assert!(!on_read_only_fs(dir.path(), "ro/.."));
        });
    }
}
