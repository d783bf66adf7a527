//! Test helpers for real read-only mounts: a private mount namespace on a thread of its own, and read-only
//! bind mounts inside it, so nothing a test mounts is seen outside it or outlives it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use nix::mount::{MsFlags, mount};

/// Runs `f` on a new thread in a new, private mount namespace (mounts made there vanish with the thread), or
/// returns `None` with a printed reason when that is not possible (not root). Threads `f` starts (e.g. a tokio
/// runtime it builds) share the namespace.
pub fn in_private_mount_ns<R: Send>(f: impl FnOnce() -> R + Send) -> Option<R> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: mounting needs root");
        return None;
    }
    std::thread::scope(|s| {
        s.spawn(|| {
            // unshare(CLONE_NEWNS) moves only the calling thread, which is why this runs on a thread of its own.
            if let Err(e) = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS) {
                eprintln!("skipped: cannot unshare a mount namespace: {e}");
                return None;
            }
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .unwrap();
            Some(f())
        })
        .join()
        .unwrap()
    })
}

/// Bind mounts `dir` onto itself and makes that mount read-only.
pub fn bind_read_only(dir: &Path) {
    mount(Some(dir), dir, None::<&str>, MsFlags::MS_BIND, None::<&str>).unwrap();
    mount(
        None::<&str>,
        dir,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .unwrap();
}
