//! Read-only directories enforced by the kernel, so a guest's write fails with `EROFS` exactly as in a Linux
//! container, and a non-recursive read-only mount leaves the mounts below it writable (recursive ones do not).
//!
//! The pod process lives in its own mount namespace (entered before any thread starts, with mounts from the
//! host propagating in but none of ours propagating out). Each read-only directory of a container is bind
//! mounted, with its submounts, at `<state_dir>/mnt/<container id>/<n>` and remounted read-only there: only the
//! top mount for `read_only`, every mount below it too (`mount_setattr(AT_RECURSIVE)`) for
//! `recursive_read_only`. The guest's pre-open then points at that mount with full WASI permissions, and the
//! kernel decides. Without a private mount namespace (not root) the pre-open stays WASI read-only instead: still
//! enforced, but writes fail with `EPERM` and submounts are read-only too.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use proto::pod::Preopen;

use crate::guest_path::{Mount, resolve_in_mounts};

/// Whether this process has its own mount namespace to make read-only mounts in.
static PRIVATE_MOUNTS: OnceLock<bool> = OnceLock::new();

/// Enters a new mount namespace whose mounts receive the host's changes but do not send ours back. Call before
/// any thread exists (`unshare` affects the calling thread only). Failure is not fatal: see the module docs.
pub fn enter_private_namespace() -> Result<(), nix::Error> {
    let entered = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).and_then(|()| {
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_SLAVE,
            None::<&str>,
        )
    });
    let _ = PRIVATE_MOUNTS.set(entered.is_ok());
    entered
}

/// Whether this process has its own mount namespace (see `enter_private_namespace`).
pub fn private_mounts() -> bool {
    PRIVATE_MOUNTS.get().copied().unwrap_or(false)
}

/// The mounts made for one container, undone by [`ContainerMounts::release`] (or with the namespace when the
/// pod process exits).
#[derive(Debug, Default)]
pub struct ContainerMounts {
    dir: Option<PathBuf>,
    targets: Vec<PathBuf>,
}

/// A read-only mount that could not be made.
#[derive(Debug, thiserror::Error)]
#[error("making {host} read-only for guest path {guest}")]
pub struct MountError {
    host: String,
    guest: String,
    #[source]
    source: std::io::Error,
}

/// Paths of a container to hide or to make read-only (CRI `masked_paths`, `readonly_paths`).
#[derive(Debug, Default)]
pub struct PathRules<'a> {
    pub masked: &'a [String],
    pub read_only: &'a [String],
}

/// Returns `preopens` with every read-only directory replaced by a kernel read-only mount of it under `dir`
/// (when this process has a private mount namespace), with `rules` applied on top, and the mounts to release
/// with the container.
pub fn prepare(
    dir: &Path,
    preopens: &[Preopen],
    rules: PathRules<'_>,
) -> Result<(Vec<Preopen>, ContainerMounts), MountError> {
    let (preopens, mut mounts) = read_only_dirs(dir, preopens)?;
    if rules.masked.is_empty() && rules.read_only.is_empty() {
        return Ok((preopens, mounts));
    }
    if !private_mounts() {
        return Err(MountError {
            host: String::new(),
            guest: rules
                .masked
                .iter()
                .chain(rules.read_only)
                .cloned()
                .collect::<Vec<_>>()
                .join(","),
            source: std::io::Error::other(
                "masked and read-only paths need the pod process's own mount namespace (run wasm-cri as root)",
            ),
        });
    }
    let guest_mounts: Vec<Mount<'_>> = preopens
        .iter()
        .map(|p| Mount {
            guest: &p.guest_path,
            host: Path::new(&p.host_path),
        })
        .collect();
    let apply =
        |guest: &str, masked: bool, mounts: &mut ContainerMounts| -> Result<(), MountError> {
            // Like runc: a path the container does not have needs no hiding.
            let Some(host) = resolve_in_mounts(&guest_mounts, guest).filter(|h| h.exists()) else {
                return Ok(());
            };
            let made = if masked {
                mask(&host)
            } else {
                read_only_bind(&host, &host, false)
            };
            made.map_err(|source| MountError {
                host: host.display().to_string(),
                guest: guest.to_string(),
                source,
            })?;
            mounts.targets.push(host);
            Ok(())
        };
    for guest in rules.read_only {
        if let Err(e) = apply(guest, false, &mut mounts) {
            mounts.release();
            return Err(e);
        }
    }
    for guest in rules.masked {
        if let Err(e) = apply(guest, true, &mut mounts) {
            mounts.release();
            return Err(e);
        }
    }
    Ok((preopens, mounts))
}

/// Hides `host`: a directory under an empty read-only tmpfs, anything else under `/dev/null` (reads as empty,
/// cannot be run), as runc masks paths.
fn mask(host: &Path) -> std::io::Result<()> {
    if host.is_dir() {
        mount(
            Some("tmpfs"),
            host,
            Some("tmpfs"),
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None::<&str>,
        )?;
    } else {
        mount(
            Some("/dev/null"),
            host,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )?;
    }
    Ok(())
}

fn read_only_dirs(
    dir: &Path,
    preopens: &[Preopen],
) -> Result<(Vec<Preopen>, ContainerMounts), MountError> {
    let mut mounts = ContainerMounts::default();
    if !private_mounts() || !preopens.iter().any(|p| p.read_only) {
        return Ok((preopens.to_vec(), mounts));
    }
    mounts.dir = Some(dir.to_path_buf());
    let mut out = Vec::with_capacity(preopens.len());
    for (n, p) in preopens.iter().enumerate() {
        if !p.read_only {
            out.push(p.clone());
            continue;
        }
        let target = dir.join(n.to_string());
        let err = |source: std::io::Error| MountError {
            host: p.host_path.clone(),
            guest: p.guest_path.clone(),
            source,
        };
        if let Err(e) = read_only_bind(Path::new(&p.host_path), &target, p.recursive_read_only) {
            mounts.release();
            return Err(err(e));
        }
        mounts.targets.push(target.clone());
        out.push(Preopen {
            host_path: target.display().to_string(),
            // The kernel enforces it now; WASI's own read-only check would answer EPERM first.
            read_only: false,
            ..p.clone()
        });
    }
    Ok((out, mounts))
}

fn read_only_bind(host: &Path, target: &Path, recursive: bool) -> std::io::Result<()> {
    std::fs::create_dir_all(target)?;
    mount(
        Some(host),
        target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )?;
    let made = (|| {
        // The remount changes only the top mount: submounts keep their own flags (Linux `ro` bind semantics).
        mount(
            None::<&str>,
            target,
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
            None::<&str>,
        )?;
        if recursive {
            set_read_only_recursively(target)?;
        }
        Ok::<(), std::io::Error>(())
    })();
    if made.is_err() {
        let _ = umount2(target, MntFlags::MNT_DETACH);
    }
    made
}

/// `mount_setattr(2)` with `AT_RECURSIVE` and `MOUNT_ATTR_RDONLY` (Linux 5.12+): every mount of the tree.
fn set_read_only_recursively(target: &Path) -> std::io::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    const AT_RECURSIVE: libc::c_int = 0x8000;
    let path = std::ffi::CString::new(target.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `path` is a NUL-terminated string and `attr` a properly laid out `struct mount_attr` that both
    // outlive the call; the kernel only reads them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

impl ContainerMounts {
    /// Unmounts everything made for the container and removes its mount points. Idempotent.
    pub fn release(&mut self) {
        // Last made first: masks sit on top of the read-only mounts they were made in.
        for target in self.targets.drain(..).rev() {
            if let Err(error) = umount2(&target, MntFlags::MNT_DETACH) {
                tracing::warn!(target = %target.display(), %error, "could not unmount a container mount");
            }
        }
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Drop for ContainerMounts {
    fn drop(&mut self) {
        self.release();
    }
}
