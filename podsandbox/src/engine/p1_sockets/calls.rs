//! The preview 1 calls on socket fds: what each one does to a [`Socket`] and writes into guest memory.
//!
//! Every function here is only reached for an fd the [`SocketTable`] holds (the linker glue in `mod.rs`
//! sends all other fds to wasmtime-wasi), takes the guest's raw i32 arguments and answers a p1 errno.

use std::net::Shutdown;
use std::os::fd::AsFd;

use wasmtime_wasi::p1::types::{
    Ciovec, Errno, Fdflags, Fdstat, Filestat, Filetype, Iovec, Riflags, Rights, Roflags, Sdflags,
};
use wiggle::{GuestError, GuestMemory, GuestPtr};

use super::socket::Socket;
use super::table::SocketTable;

/// Most bytes moved by one read or write call: a bound on the host buffer; callers loop for more, as they
/// must for any socket.
const MAX_IO: usize = 256 * 1024;

type Res = Result<(), Errno>;

/// The errno for a bad guest pointer or value, as wasmtime-wasi answers it.
fn guest(e: GuestError) -> Errno {
    match e {
        GuestError::InvalidFlagValue(_) | GuestError::InvalidEnumValue(_) => Errno::Inval,
        _ => Errno::Fault,
    }
}

/// The guest passes offsets, lengths and flags as i32 bit patterns.
fn ptr<T>(offset: i32) -> GuestPtr<T> {
    GuestPtr::new(offset.cast_unsigned())
}

fn socket(t: &mut SocketTable, fd: i32) -> Result<&mut Socket, Errno> {
    t.get_mut(fd).ok_or(Errno::Badf)
}

fn write_size(memory: &mut GuestMemory<'_>, at: i32, n: usize) -> Res {
    let n = u32::try_from(n).map_err(|_| Errno::Overflow)?;
    memory.write(ptr::<u32>(at), n).map_err(guest)
}

/// The guest buffers of an iovec array, capped at [`MAX_IO`] bytes in all.
fn buffers(memory: &GuestMemory<'_>, iovs: i32, len: i32) -> Result<Vec<GuestPtr<[u8]>>, Errno> {
    let array = GuestPtr::<[Iovec]>::new((iovs.cast_unsigned(), len.cast_unsigned()));
    let mut out = Vec::new();
    let mut room = MAX_IO;
    for iov in array.iter() {
        let iov = memory.read(iov.map_err(guest)?).map_err(guest)?;
        let take = room.min(usize::try_from(iov.buf_len).map_err(|_| Errno::Overflow)?);
        if take > 0 {
            out.push(
                iov.buf
                    .as_array(u32::try_from(take).map_err(|_| Errno::Overflow)?),
            );
            room -= take;
        }
    }
    Ok(out)
}

/// The bytes of a ciovec array, capped at [`MAX_IO`].
fn gather(memory: &GuestMemory<'_>, ciovs: i32, len: i32) -> Result<Vec<u8>, Errno> {
    let array = GuestPtr::<[Ciovec]>::new((ciovs.cast_unsigned(), len.cast_unsigned()));
    let mut out = Vec::new();
    for iov in array.iter() {
        let iov = memory.read(iov.map_err(guest)?).map_err(guest)?;
        let take =
            (MAX_IO - out.len()).min(usize::try_from(iov.buf_len).map_err(|_| Errno::Overflow)?);
        if take == 0 {
            continue;
        }
        let bytes = memory
            .as_cow(
                iov.buf
                    .as_array(u32::try_from(take).map_err(|_| Errno::Overflow)?),
            )
            .map_err(guest)?;
        out.extend_from_slice(&bytes);
    }
    Ok(out)
}

/// Copies `data` into the guest buffers in order.
fn scatter(memory: &mut GuestMemory<'_>, bufs: &[GuestPtr<[u8]>], data: &[u8]) -> Res {
    let mut rest = data;
    for buf in bufs {
        if rest.is_empty() {
            break;
        }
        let n = rest.len().min(buf.len() as usize);
        let (chunk, tail) = rest.split_at(n);
        let dst = buf.offset_base();
        memory
            .copy_from_slice(chunk, GuestPtr::new((dst, n as u32)))
            .map_err(guest)?;
        rest = tail;
    }
    Ok(())
}

/// Reads into the guest's buffers: one read, or with `wait_all` until they are full or the peer ends.
async fn recv_into(
    s: &mut Socket,
    memory: &mut GuestMemory<'_>,
    bufs: &[GuestPtr<[u8]>],
    peek: bool,
    wait_all: bool,
) -> Result<usize, Errno> {
    let want: usize = bufs.iter().map(|b| b.len() as usize).sum();
    let mut data = vec![0u8; want];
    let mut got = 0;
    while got < want {
        match s.read(&mut data[got..], peek).await {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if got > 0 => {
                tracing::debug!(errno = ?e, "socket read ended early; returning the bytes read");
                break;
            }
            Err(e) => return Err(e),
        }
        if !wait_all || peek || s.nonblocking {
            break;
        }
    }
    scatter(memory, bufs, &data[..got])?;
    Ok(got)
}

pub async fn fd_read(
    t: &mut SocketTable,
    memory: &mut GuestMemory<'_>,
    fd: i32,
    iovs: i32,
    len: i32,
    nread: i32,
) -> Res {
    let bufs = buffers(memory, iovs, len)?;
    let n = recv_into(socket(t, fd)?, memory, &bufs, false, false).await?;
    write_size(memory, nread, n)
}

pub async fn fd_write(
    t: &mut SocketTable,
    memory: &mut GuestMemory<'_>,
    fd: i32,
    ciovs: i32,
    len: i32,
    nwritten: i32,
) -> Res {
    let data = gather(memory, ciovs, len)?;
    let n = if data.is_empty() {
        0
    } else {
        socket(t, fd)?.write(&data).await?
    };
    write_size(memory, nwritten, n)
}

// The arguments are the p1 ABI's, one for one.
#[allow(clippy::too_many_arguments)]
pub async fn sock_recv(
    t: &mut SocketTable,
    memory: &mut GuestMemory<'_>,
    fd: i32,
    iovs: i32,
    len: i32,
    flags: i32,
    nread: i32,
    roflags: i32,
) -> Res {
    let flags = u16::try_from(flags)
        .ok()
        .and_then(Riflags::from_bits)
        .ok_or(Errno::Inval)?;
    let bufs = buffers(memory, iovs, len)?;
    let n = recv_into(
        socket(t, fd)?,
        memory,
        &bufs,
        flags.contains(Riflags::RECV_PEEK),
        flags.contains(Riflags::RECV_WAITALL),
    )
    .await?;
    write_size(memory, nread, n)?;
    memory
        .write(ptr::<Roflags>(roflags), Roflags::empty())
        .map_err(guest)
}

pub async fn sock_send(
    t: &mut SocketTable,
    memory: &mut GuestMemory<'_>,
    fd: i32,
    ciovs: i32,
    len: i32,
    _flags: i32,
    nwritten: i32,
) -> Res {
    fd_write(t, memory, fd, ciovs, len, nwritten).await
}

pub async fn sock_accept(
    t: &mut SocketTable,
    memory: &mut GuestMemory<'_>,
    fd: i32,
    flags: i32,
    result: i32,
) -> Res {
    let flags = fdflags(flags)?;
    if !(flags - Fdflags::NONBLOCK).is_empty() {
        return Err(Errno::Inval);
    }
    let stream = socket(t, fd)?.accept().await?;
    let s = Socket::stream(stream, flags.contains(Fdflags::NONBLOCK))
        .map_err(|e| super::socket::errno(&e))?;
    let new_fd = t.insert(s).map_err(|_| Errno::Nfile)?;
    // The new fd is in the table now; if the guest's pointer is bad, take it back out so nothing leaks.
    if let Err(e) = memory.write(ptr::<u32>(result), new_fd) {
        t.remove(new_fd.cast_signed());
        return Err(guest(e));
    }
    tracing::debug!(listener = fd, fd = new_fd, "guest accepted a connection");
    Ok(())
}

pub async fn sock_shutdown(
    t: &mut SocketTable,
    _memory: &mut GuestMemory<'_>,
    fd: i32,
    how: i32,
) -> Res {
    let how = u8::try_from(how)
        .ok()
        .and_then(Sdflags::from_bits)
        .ok_or(Errno::Inval)?;
    let how = if how == Sdflags::RD | Sdflags::WR {
        Shutdown::Both
    } else if how == Sdflags::RD {
        Shutdown::Read
    } else if how == Sdflags::WR {
        Shutdown::Write
    } else {
        return Err(Errno::Inval);
    };
    socket(t, fd)?.shutdown(how)
}

pub async fn fd_close(t: &mut SocketTable, _memory: &mut GuestMemory<'_>, fd: i32) -> Res {
    t.remove(fd).map(drop).ok_or(Errno::Badf)
}

/// Socket fds are never pre-opens: `badf` is what ends wasi-libc's pre-open scan.
pub async fn fd_prestat_get(
    _t: &mut SocketTable,
    _memory: &mut GuestMemory<'_>,
    _fd: i32,
    _prestat: i32,
) -> Res {
    Err(Errno::Badf)
}

/// The guest's `fdflags` argument, `inval` if it has bits p1 does not define.
fn fdflags(flags: i32) -> Result<Fdflags, Errno> {
    u16::try_from(flags)
        .ok()
        .and_then(Fdflags::from_bits)
        .ok_or(Errno::Inval)
}

fn rights(s: &Socket) -> Rights {
    let common = Rights::FD_FDSTAT_SET_FLAGS | Rights::FD_FILESTAT_GET | Rights::POLL_FD_READWRITE;
    if s.is_listener() {
        common | Rights::SOCK_ACCEPT
    } else {
        common | Rights::FD_READ | Rights::FD_WRITE | Rights::SOCK_SHUTDOWN
    }
}

pub async fn fd_fdstat_get(
    t: &mut SocketTable,
    memory: &mut GuestMemory<'_>,
    fd: i32,
    stat: i32,
) -> Res {
    let s = socket(t, fd)?;
    let value = Fdstat {
        fs_filetype: Filetype::SocketStream,
        fs_flags: if s.nonblocking {
            Fdflags::NONBLOCK
        } else {
            Fdflags::empty()
        },
        fs_rights_base: rights(s),
        fs_rights_inheriting: rights(s),
    };
    memory.write(ptr::<Fdstat>(stat), value).map_err(guest)
}

/// Only `nonblock` means anything for a socket; the other flags are accepted and ignored, as Linux's `fcntl`
/// does for sockets.
pub async fn fd_fdstat_set_flags(
    t: &mut SocketTable,
    _memory: &mut GuestMemory<'_>,
    fd: i32,
    flags: i32,
) -> Res {
    let flags = fdflags(flags)?;
    socket(t, fd)?.nonblocking = flags.contains(Fdflags::NONBLOCK);
    Ok(())
}

pub async fn fd_filestat_get(
    t: &mut SocketTable,
    memory: &mut GuestMemory<'_>,
    fd: i32,
    stat: i32,
) -> Res {
    let s = socket(t, fd)?;
    let st =
        nix::sys::stat::fstat(s.host()?.as_fd()).map_err(|e| super::socket::errno(&e.into()))?;
    let ns = |sec: i64, nsec: i64| {
        u64::try_from(sec)
            .unwrap_or(0)
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::try_from(nsec).unwrap_or(0))
    };
    let value = Filestat {
        dev: st.st_dev,
        ino: st.st_ino,
        filetype: Filetype::SocketStream,
        nlink: st.st_nlink,
        size: 0,
        atim: ns(st.st_atime, st.st_atime_nsec),
        mtim: ns(st.st_mtime, st.st_mtime_nsec),
        ctim: ns(st.st_ctime, st.st_ctime_nsec),
    };
    memory.write(ptr::<Filestat>(stat), value).map_err(guest)
}
