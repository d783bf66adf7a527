//! Pod network namespaces, pinned by a bind mount at `<dir>/<pod-id>`.
//!
//! A namespace is created on a dedicated, short-lived thread: `unshare(CLONE_NEWNET)` changes only the calling
//! thread, so doing it on a tokio worker would leave that worker in the pod's namespace. The thread pins the
//! namespace by bind-mounting `/proc/thread-self/ns/net` onto a file, brings `lo` up, and exits; the bind mount
//! keeps the namespace alive until [`NetNs::remove`] (or [`remove_path`]) unmounts it.

use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use tracing::debug;

use crate::error::NetError;

/// A pinned network namespace. Dropping the value does not remove the namespace: pods outlive the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetNs {
    path: PathBuf,
}

impl NetNs {
    /// Creates a new network namespace pinned at `dir/name`, with the loopback interface up.
    pub fn create(dir: &Path, name: &str) -> Result<NetNs, NetError> {
        fs::create_dir_all(dir).map_err(|source| NetError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(name);
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| NetError::CreateMountPoint {
                path: path.clone(),
                source,
            })?;

        let worker_path = path.clone();
        let joined = std::thread::Builder::new()
            .name("netns-create".into())
            .spawn(move || create_on_this_thread(&worker_path))
            .map_err(|source| NetError::SpawnWorker {
                path: path.clone(),
                source,
            })?
            .join();
        let result = match joined {
            Ok(result) => result,
            Err(_) => Err(NetError::WorkerPanicked { path: path.clone() }),
        };
        if let Err(err) = result {
            // Roll back: never leave a half-made mount point behind.
            let _ = remove_path(&path);
            return Err(err);
        }
        debug!(netns = %path.display(), "network namespace created");
        Ok(NetNs { path })
    }

    /// Wraps an existing pinned namespace (after a daemon restart).
    pub fn from_path(path: PathBuf) -> NetNs {
        NetNs { path }
    }

    /// The bind-mounted namespace file; pod processes open it and `setns` into it.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Unpins and deletes the namespace file. Idempotent.
    pub fn remove(&self) -> Result<(), NetError> {
        remove_path(&self.path)
    }
}

/// Unmounts and deletes a pinned namespace file; a missing or already unmounted file is not an error.
pub fn remove_path(path: &Path) -> Result<(), NetError> {
    match nix::mount::umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(source) => {
            return Err(NetError::Unmount {
                path: path.to_path_buf(),
                source,
            });
        }
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(NetError::RemoveFile {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Runs on the throw-away thread: after `unshare` this thread is inside the new namespace and must not be
/// reused for anything else, which is why it exits right after.
fn create_on_this_thread(path: &Path) -> Result<(), NetError> {
    nix::sched::unshare(CloneFlags::CLONE_NEWNET).map_err(NetError::Unshare)?;
    nix::mount::mount(
        Some("/proc/thread-self/ns/net"),
        path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|source| NetError::Pin {
        path: path.to_path_buf(),
        source,
    })?;
    loopback_up().map_err(|source| NetError::LoopbackUp {
        path: path.to_path_buf(),
        source,
    })
}

/// Sets IFF_UP on `lo` in the calling thread's network namespace with the classic SIOCSIFFLAGS ioctl, which
/// needs no netlink machinery.
fn loopback_up() -> std::io::Result<()> {
    // SAFETY: plain socket(2) call; the returned descriptor is checked and owned right below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };

    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: the socket is valid and req is a properly initialised ifreq naming "lo".
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union, which is the one read and written here.
    unsafe {
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    // SAFETY: as above; SIOCSIFFLAGS reads the name and flags from req.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn is_root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn remove_of_missing_namespace_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        remove_path(&dir.path().join("nope")).unwrap();
    }

    #[test]
    fn root_create_and_remove_namespace() {
        if !is_root() {
            eprintln!(
                "skipping root_create_and_remove_namespace: needs root to unshare a network namespace"
            );
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let ns = NetNs::create(dir.path(), "pod1").unwrap();
        // The pinned file is a different namespace from ours.
        let ours = fs::metadata("/proc/self/ns/net").unwrap();
        let pinned = fs::metadata(ns.path()).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_ne!(ours.ino(), pinned.ino());
        ns.remove().unwrap();
        assert!(!ns.path().exists());
        ns.remove().unwrap();
    }
}
