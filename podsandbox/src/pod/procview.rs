//! A container's `/proc`: the parts of the kernel's own procfs that describe the pod, and nothing that would
//! let a guest look into the pod process or the node.
//!
//! The whole procfs cannot be handed to a guest: every guest runs inside the pod process, so `/proc/self/mem`,
//! `environ` or `/proc/kcore` would give it the memory of the other containers and of the node. So the view is
//! a small directory tree, read-only to the guest, made of:
//! - `sys/` and `sysvipc/`: read-only binds of the real `/proc/sys` (without its submounts) and
//!   `/proc/sysvipc`. The kernel answers them in the reader's namespaces, and the reader is the instance's
//!   thread, so they show the pod's IPC and network namespaces (its sysctls, its shared memory segments), or
//!   the node's for hostIPC and hostNetwork pods;
//! - `net/`: a read-only bind of the pod process's `/proc/<pid>/net` (sockets of the pod's network namespace);
//! - `self/status` (and `thread-self` → `self`): the identity, capability and seccomp lines of the thread that
//!   runs the container, read from the kernel when the container starts (see `identity::thread_status`);
//! - `1/cmdline` and `1/comm` when the pod has its own PID namespace: its pid 1 is the pod process.
//!
//! Layout: `<dir>/src` holds the tree (writable by the pod process), `<dir>/view` is a read-only bind of it,
//! which is what the guest's `/proc` pre-open points at. Needs root and the pod's own mount namespace; without
//! them a container has no `/proc` (as before).

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

/// The `/proc` view of one container, unmounted and deleted on drop.
#[derive(Debug)]
pub struct ProcView {
    dir: PathBuf,
    /// Mounts in the order made.
    mounts: Vec<PathBuf>,
}

/// A view that could not be made.
#[derive(Debug, thiserror::Error)]
#[error("making the container's /proc view at {path}")]
pub struct ProcViewError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

impl ProcView {
    /// Builds the view under `dir`.
    pub fn create(dir: &Path) -> Result<ProcView, ProcViewError> {
        let mut view = ProcView {
            dir: dir.to_path_buf(),
            mounts: Vec::new(),
        };
        view.build().map_err(|source| ProcViewError {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(view)
    }

    fn build(&mut self) -> std::io::Result<()> {
        let src = self.dir.join("src");
        std::fs::create_dir_all(src.join("self"))?;
        std::os::unix::fs::symlink("self", src.join("thread-self"))?;
        File::create(src.join("self/status"))?;
        // Resolved when mounted: this process, whose network namespace is the pod's.
        let net = PathBuf::from("/proc/self/net");
        for (from, name) in [
            (Path::new("/proc/sys"), "sys"),
            (Path::new("/proc/sysvipc"), "sysvipc"),
            (net.as_path(), "net"),
        ] {
            let target = src.join(name);
            std::fs::create_dir_all(&target)?;
            // Not recursive: submounts such as /proc/sys/fs/binfmt_misc stay out of the view.
            self.read_only_bind(from, &target, MsFlags::empty())?;
        }
        if std::process::id() == 1 {
            // The pod has a PID namespace of its own, whose pid 1 is this process (the part a pause container
            // plays in a Linux pod): show it by its name and command line.
            let one = src.join("1");
            std::fs::create_dir_all(&one)?;
            std::fs::copy("/proc/self/cmdline", one.join("cmdline"))?;
            std::fs::copy("/proc/self/comm", one.join("comm"))?;
        }
        let view = self.dir.join("view");
        std::fs::create_dir_all(&view)?;
        self.read_only_bind(&src, &view, MsFlags::MS_REC)
    }

    fn read_only_bind(&mut self, from: &Path, to: &Path, rec: MsFlags) -> std::io::Result<()> {
        mount(
            Some(from),
            to,
            None::<&str>,
            MsFlags::MS_BIND | rec,
            None::<&str>,
        )?;
        self.mounts.push(to.to_path_buf());
        mount(
            None::<&str>,
            to,
            None::<&str>,
            MsFlags::MS_REMOUNT
                | MsFlags::MS_BIND
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC,
            None::<&str>,
        )?;
        Ok(())
    }

    /// The directory the guest's `/proc` pre-open points at.
    pub fn guest_root(&self) -> PathBuf {
        self.dir.join("view")
    }

    /// The file holding the container's `self/status`, opened for the instance thread to fill in (it may no
    /// longer have the right to open it once it has the container's identity).
    pub fn status_file(&self) -> std::io::Result<File> {
        File::create(self.dir.join("src/self/status"))
    }
}

impl Drop for ProcView {
    fn drop(&mut self) {
        for target in self.mounts.drain(..).rev() {
            if let Err(error) = umount2(&target, MntFlags::MNT_DETACH) {
                tracing::warn!(target = %target.display(), %error, "could not unmount the /proc view");
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
