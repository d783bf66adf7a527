//! Sockets for WASI preview 1 guests: pre-opened TCP listeners (socket activation, `LISTEN_FDS`) and the
//! connections accepted from them, behind shadows of the p1 imports.
//!
//! wasmtime-wasi 48's p1 has no sockets (`sock_accept` and friends answer `notsock`), so the socket fds are
//! ours: a [`SocketTable`] in the store numbers them from 2^30 up (see [`table`] for why that range can never
//! meet wasmtime-wasi's own numbers), and each shadowed import asks the table first. Calls on any other fd go
//! to wasmtime-wasi's own implementation (the per-function glue of `wasmtime_wasi::p1::wasi_snapshot_preview1`,
//! exactly what its linker entry calls), so files, directories and stdio behave exactly as before.
//!
//! Shadowed: `sock_accept`, `sock_recv`, `sock_send`, `sock_shutdown`, `fd_read`, `fd_write`, `fd_close`,
//! `fd_fdstat_get` (`socket_stream`), `fd_fdstat_set_flags` (`nonblock`), `fd_prestat_get` (`badf`, which
//! ends wasi-libc's pre-open scan), `fd_filestat_get` and `poll_oneoff` ([`poll`]). Other calls on a socket fd
//! (`fd_seek`, `fd_renumber`, ...) reach wasmtime-wasi, which does not know the fd and answers `badf`.
//!
//! - [`listen`]: binding the listen ports and the guest's `LISTEN_*` environment.
//! - [`socket`]: one socket, its blocking mode and the async waits; [`calls`]: the calls on it.

pub mod calls;
pub mod listen;
pub mod poll;
pub mod socket;
pub mod table;

use wasmtime::{AsContextMut, Caller, Linker};
use wasmtime_wasi::p1::types::Errno;
use wasmtime_wasi::p1::wasi_snapshot_preview1::{self as glue, WasiSnapshotPreview1};

pub use listen::{ListenError, Listeners};
pub use table::{FIRST_SOCKET_FD, SocketTable};

use super::p1_guest::{MODULE, guest_memory};
use super::wasi::ModuleState;

/// The p1 errno code of a call's outcome.
fn code(r: Result<(), Errno>) -> i32 {
    match r {
        Ok(()) => Errno::Success as i32,
        Err(e) => e as i32,
    }
}

/// Shadows `$name`, whose first argument is an fd: ours ([`calls`]) for a socket fd, else wasmtime-wasi's glue
/// (`async` or `sync` as wasmtime-wasi declares it).
macro_rules! shadow {
    ($linker:ident, $mode:ident $name:ident ($fd:ident $(, $arg:ident)*)) => {
        $linker.func_wrap_async(
            MODULE,
            stringify!($name),
            |mut caller: Caller<'_, ModuleState>, ($fd, $($arg,)*): (i32, $(shadow!(@i32 $arg),)*)| {
                Box::new(async move {
                    let export = caller.get_export("memory");
                    let fuel = caller.as_context_mut().hostcall_fuel();
                    let (mut memory, state) = guest_memory(&export, &mut caller)?;
                    if state.sockets.contains($fd) {
                        let r = calls::$name(&mut state.sockets, &mut memory, $fd $(, $arg)*).await;
                        return Ok(code(r));
                    }
                    state.wasi.set_hostcall_fuel(fuel);
                    shadow!(@call $mode glue::$name(&mut state.wasi, &mut memory, $fd $(, $arg)*))
                })
            },
        )?;
    };
    (@i32 $arg:ident) => { i32 };
    (@call async $call:expr) => { $call.await };
    (@call sync $call:expr) => { $call };
}

/// Replaces the p1 imports listed in the module docs with socket-aware versions. Call it after wasmtime-wasi's
/// `add_to_linker_async`.
pub fn add_to_linker(linker: &mut Linker<ModuleState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    shadow!(linker, async fd_read(fd, iovs, iovs_len, nread));
    shadow!(linker, async fd_write(fd, ciovs, ciovs_len, nwritten));
    shadow!(linker, async fd_close(fd));
    shadow!(linker, async fd_fdstat_get(fd, stat));
    shadow!(linker, sync fd_fdstat_set_flags(fd, flags));
    shadow!(linker, sync fd_prestat_get(fd, prestat));
    shadow!(linker, async fd_filestat_get(fd, stat));
    shadow!(linker, sync sock_accept(fd, flags, result));
    shadow!(linker, sync sock_recv(fd, iovs, iovs_len, flags, nread, roflags));
    shadow!(linker, sync sock_send(fd, ciovs, ciovs_len, flags, nwritten));
    shadow!(linker, sync sock_shutdown(fd, how));
    linker.func_wrap_async(
        MODULE,
        "poll_oneoff",
        |mut caller: Caller<'_, ModuleState>,
         (subs, events, nsubs, nevents): (i32, i32, i32, i32)| {
            Box::new(async move {
                let export = caller.get_export("memory");
                let fuel = caller.as_context_mut().hostcall_fuel();
                let (mut memory, state) = guest_memory(&export, &mut caller)?;
                let args = poll::Args {
                    subs,
                    events,
                    nsubs,
                    nevents,
                };
                poll::poll_oneoff(state, &mut memory, fuel, args).await
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}
