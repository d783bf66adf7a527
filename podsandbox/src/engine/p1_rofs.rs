//! `EROFS` for WASI preview 1 guests: the path-mutating imports, shadowed so a write the kernel refused as
//! "read-only file system" reaches the guest as `rofs`, not as `io`.
//!
//! Read-only roots, read-only mounts and `readonly_paths` are real read-only kernel mounts (`pod/mounts.rs`).
//! The kernel answers a write with `EROFS`, but wasmtime-wasi 48 has no mapping for it
//! (`filesystem.rs` `from_raw_os_error`) and hands the guest `io` (EIO, "I/O error"), where programs and
//! critest expect "Read-only file system". Each shadow here runs wasmtime-wasi's own implementation (the
//! per-function glue of `wasmtime_wasi::p1::wasi_snapshot_preview1`, exactly what its linker entry calls) and
//! only when that answered `io` asks the kernel whether the target lies on a read-only filesystem
//! ([`read_only_fs`](super::read_only_fs)); if it does, the guest gets `rofs`. Nothing else changes: same
//! permission checks, same results, same errors.
//!
//! The host path behind a directory fd comes from the container's pre-opens: wasmtime-wasi reports a pre-open's
//! guest name (`fd_prestat_dir_name`), and [`PreopenHosts`] maps that name to the host directory the context
//! was built from. wasi-libc resolves every path, absolute or relative to its emulated cwd, against a pre-open,
//! so in practice every call names one. A directory fd the guest opened itself has no known host path and
//! keeps wasmtime-wasi's answer. Fd-based mutators (`fd_filestat_set_times` on a file opened read-only) are
//! left alone for the same reason.

use std::path::{Path, PathBuf};

use wasmtime::{AsContextMut, Caller, Linker};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p1::types::{Errno, Fd, Oflags, Prestat, Rights};
use wasmtime_wasi::p1::wasi_snapshot_preview1::{self as glue, WasiSnapshotPreview1};
use wiggle::{GuestMemory, GuestPtr};

use super::p1_guest::{MODULE, guest_memory};
use super::read_only_fs::on_read_only_fs;
use super::run::Preopen;
use super::wasi::ModuleState;

const IO: i32 = Errno::Io as i32;
const ROFS: i32 = Errno::Rofs as i32;

/// The host directory behind each pre-open's guest name.
#[derive(Debug, Clone, Default)]
pub struct PreopenHosts(Vec<(String, PathBuf)>);

impl PreopenHosts {
    pub fn new(preopens: &[Preopen]) -> PreopenHosts {
        PreopenHosts(
            preopens
                .iter()
                .map(|p| (p.guest.clone(), p.host.clone()))
                .collect(),
        )
    }

    /// The host directory of the pre-open named `guest`. With two pre-opens of one name the later one wins, as
    /// in wasi-libc's lookup (it prefers later pre-opens among equally long matches).
    fn host(&self, guest: &str) -> Option<&Path> {
        self.0
            .iter()
            .rev()
            .find(|(name, _)| name == guest)
            .map(|(_, host)| host.as_path())
    }
}

/// Whether the path (`ptr`, `len` in guest memory) under directory fd `fd` is on a read-only filesystem.
fn target_read_only(
    wasi: &mut WasiP1Ctx,
    hosts: &PreopenHosts,
    memory: &GuestMemory<'_>,
    (fd, ptr, len): (i32, i32, i32),
) -> bool {
    let Some(root) = preopen_name(wasi, fd).and_then(|name| hosts.host(&name).map(Path::to_owned))
    else {
        return false;
    };
    // The guest passes offsets and lengths as i32 bit patterns of u32 values.
    let path = GuestPtr::<str>::new((ptr.cast_unsigned(), len.cast_unsigned()));
    match memory.as_cow_str(path) {
        Ok(rel) => on_read_only_fs(&root, &rel),
        Err(_) => false,
    }
}

/// The guest name of pre-open `fd`, asked of wasmtime-wasi itself (it tracks renumbering and closing).
fn preopen_name(wasi: &mut WasiP1Ctx, fd: i32) -> Option<String> {
    let fd = Fd::from(fd.cast_unsigned());
    // Neither call reads guest memory; `fd_prestat_dir_name` writes the name into the scratch buffer given.
    let Ok(Prestat::Dir(dir)) = wasi.fd_prestat_get(&mut GuestMemory::Unshared(&mut []), fd) else {
        return None;
    };
    let mut name = vec![0; usize::try_from(dir.pr_name_len).ok()?];
    wasi.fd_prestat_dir_name(
        &mut GuestMemory::Unshared(&mut name),
        fd,
        GuestPtr::new(0),
        dir.pr_name_len,
    )
    .ok()?;
    String::from_utf8(name).ok()
}

/// Shadows `$name` with wasmtime-wasi's own glue plus the `io` → `rofs` check of the listed (dirfd, path ptr,
/// path len) targets, done only when `$mutates` (an expression over the arguments) holds.
macro_rules! shadow {
    ($linker:ident, $name:ident ($($arg:ident : $ty:ty),*), [$(($fd:ident, $ptr:ident, $len:ident)),+], $mutates:expr) => {
        $linker.func_wrap_async(
            MODULE,
            stringify!($name),
            |mut caller: Caller<'_, ModuleState>, ($($arg,)*): ($($ty,)*)| {
                Box::new(async move {
                    let export = caller.get_export("memory");
                    let fuel = caller.as_context_mut().hostcall_fuel();
                    let (mut memory, state) = guest_memory(&export, &mut caller)?;
                    state.wasi.set_hostcall_fuel(fuel);
                    let errno = glue::$name(&mut state.wasi, &mut memory, $($arg),*).await?;
                    if errno != IO || !$mutates {
                        return Ok(errno);
                    }
                    let ModuleState { wasi, preopen_hosts, .. } = state;
                    let read_only = [$(($fd, $ptr, $len)),+]
                        .into_iter()
                        .any(|target| target_read_only(wasi, preopen_hosts, &memory, target));
                    if read_only {
                        tracing::debug!(function = stringify!($name), "kernel refused a write as read-only; guest gets rofs");
                        Ok(ROFS)
                    } else {
                        Ok(errno)
                    }
                })
            },
        )?;
    };
}

/// Shadows the path-mutating preview 1 imports in `linker` (which must already hold wasmtime-wasi's).
pub(crate) fn add_to_linker(linker: &mut Linker<ModuleState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    shadow!(
        linker,
        path_open(
            fd: i32,
            dirflags: i32,
            path: i32,
            len: i32,
            oflags: i32,
            rights_base: i64,
            rights_inheriting: i64,
            fdflags: i32,
            opened: i32
        ),
        [(fd, path, len)],
        // Opening only to read never makes the kernel say EROFS; an EIO then is a real I/O error.
        opens_for_writing(oflags, rights_base)
    );
    shadow!(
        linker,
        path_create_directory(fd: i32, path: i32, len: i32),
        [(fd, path, len)],
        true
    );
    shadow!(
        linker,
        path_unlink_file(fd: i32, path: i32, len: i32),
        [(fd, path, len)],
        true
    );
    shadow!(
        linker,
        path_remove_directory(fd: i32, path: i32, len: i32),
        [(fd, path, len)],
        true
    );
    shadow!(
        linker,
        path_rename(
            fd: i32,
            path: i32,
            len: i32,
            new_fd: i32,
            new_path: i32,
            new_len: i32
        ),
        [(fd, path, len), (new_fd, new_path, new_len)],
        true
    );
    shadow!(
        linker,
        path_symlink(target: i32, target_len: i32, fd: i32, path: i32, len: i32),
        [(fd, path, len)],
        true
    );
    shadow!(
        linker,
        path_link(
            fd: i32,
            flags: i32,
            path: i32,
            len: i32,
            new_fd: i32,
            new_path: i32,
            new_len: i32
        ),
        [(new_fd, new_path, new_len), (fd, path, len)],
        true
    );
    shadow!(
        linker,
        path_filestat_set_times(
            fd: i32,
            flags: i32,
            path: i32,
            len: i32,
            atim: i64,
            mtim: i64,
            fst_flags: i32
        ),
        [(fd, path, len)],
        true
    );
    linker.allow_shadowing(false);
    Ok(())
}

/// Whether a `path_open` may write: create, truncate, or a write right (wasmtime-wasi opens for writing exactly
/// when `fd_write` is asked for).
fn opens_for_writing(oflags: i32, rights_base: i64) -> bool {
    let oflags = Oflags::from_bits_truncate(u16::try_from(oflags & 0xffff).unwrap_or(0));
    let rights = Rights::from_bits_truncate(rights_base.cast_unsigned());
    oflags.intersects(Oflags::CREAT | Oflags::TRUNC) || rights.contains(Rights::FD_WRITE)
}
