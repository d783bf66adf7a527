//! One guest socket: a host TCP listener or connection, its p1 blocking mode, and the async waits behind
//! blocking calls.
//!
//! Host sockets are always in non-blocking mode; a guest call in blocking mode tries the operation and, when
//! the kernel would block, waits for readiness on the tokio reactor, so no executor thread ever blocks. The
//! reactor registration is made lazily, inside the first host call that needs to wait: listeners are bound
//! before the instance starts (possibly outside the runtime that will drive it), and a registration belongs to
//! the runtime it was made in. Readiness is always confirmed with a zero-timeout `poll(2)`, so a stale
//! readiness cached by the reactor never turns into a wrong answer to the guest.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use wasmtime_wasi::p1::types::Errno;

/// The host side of a socket fd.
#[derive(Debug)]
pub enum Host {
    Listener(TcpListener),
    Stream(TcpStream),
}

impl AsRawFd for Host {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Host::Listener(l) => l.as_raw_fd(),
            Host::Stream(s) => s.as_raw_fd(),
        }
    }
}

impl AsFd for Host {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Host::Listener(l) => l.as_fd(),
            Host::Stream(s) => s.as_fd(),
        }
    }
}

/// What a poll subscription or a blocked call waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Read,
    Write,
}

/// A readiness seen by `poll(2)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    /// Both directions are shut down (`POLLHUP`) or the socket is in error.
    pub hangup: bool,
}

#[derive(Debug)]
pub struct Socket {
    /// Exactly one of `unregistered` and `registered` holds the host socket (see [`Socket::registered`]).
    unregistered: Option<Host>,
    registered: Option<AsyncFd<Host>>,
    /// p1 `fdflags.nonblock`: the guest asked for `again` instead of waiting.
    pub nonblocking: bool,
}

impl Socket {
    /// A pre-opened listener (blocking for the guest, as systemd hands them out).
    pub fn listener(l: TcpListener) -> io::Result<Socket> {
        l.set_nonblocking(true)?;
        Ok(Socket::new(Host::Listener(l), false))
    }

    /// An accepted connection.
    pub fn stream(s: TcpStream, nonblocking: bool) -> io::Result<Socket> {
        // Accepted sockets do not inherit O_NONBLOCK from the listener on Linux.
        s.set_nonblocking(true)?;
        Ok(Socket::new(Host::Stream(s), nonblocking))
    }

    fn new(host: Host, nonblocking: bool) -> Socket {
        Socket {
            unregistered: Some(host),
            registered: None,
            nonblocking,
        }
    }

    pub fn host(&self) -> Result<&Host, Errno> {
        match (&self.registered, &self.unregistered) {
            (Some(fd), _) => Ok(fd.get_ref()),
            (None, Some(host)) => Ok(host),
            // Only possible if a registration panicked halfway; the socket is gone either way.
            (None, None) => Err(Errno::Badf),
        }
    }

    pub fn is_listener(&self) -> bool {
        matches!(self.host(), Ok(Host::Listener(_)))
    }

    /// The reactor registration, made now if this is the first wait. Call it inside the runtime that drives the
    /// instance.
    pub fn registered(&mut self) -> Result<&AsyncFd<Host>, Errno> {
        if self.registered.is_none() {
            if tokio::runtime::Handle::try_current().is_err() {
                tracing::warn!("guest socket wait outside a tokio runtime");
                return Err(Errno::Io);
            }
            let host = self.unregistered.take().ok_or(Errno::Badf)?;
            // SAFETY: `host` owns its fd (a std TcpListener/TcpStream, closed only when dropped) and is moved
            // into the AsyncFd, which keeps it until the AsyncFd itself is dropped; its `as_raw_fd` always
            // returns that same fd and nothing else can close it meanwhile.
            match unsafe { AsyncFd::register(host) } {
                Ok(fd) => self.registered = Some(fd),
                Err(e) => {
                    let (host, error) = e.into_parts();
                    self.unregistered = Some(host);
                    tracing::warn!(error = %error, "registering a guest socket with the reactor");
                    return Err(errno(&error));
                }
            }
        }
        self.registered.as_ref().ok_or(Errno::Badf)
    }

    /// The reactor registration if [`Socket::registered`] made one.
    pub fn registration(&self) -> Option<&AsyncFd<Host>> {
        self.registered.as_ref()
    }

    /// Takes the next pending connection; waits for one unless the socket is non-blocking.
    pub async fn accept(&mut self) -> Result<TcpStream, Errno> {
        loop {
            let Host::Listener(l) = self.host()? else {
                return Err(Errno::Inval);
            };
            match l.accept() {
                Ok((s, _peer)) => return Ok(s),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(errno(&e)),
            }
            self.wait_or_again(Want::Read).await?;
        }
    }

    /// Reads (or peeks) into `buf`; waits for data unless non-blocking. 0 means end-of-file.
    pub async fn read(&mut self, buf: &mut [u8], peek: bool) -> Result<usize, Errno> {
        loop {
            let Host::Stream(s) = self.host()? else {
                return Err(Errno::Notconn);
            };
            let r = if peek { s.peek(buf) } else { (&*s).read(buf) };
            match r {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(errno(&e)),
            }
            self.wait_or_again(Want::Read).await?;
        }
    }

    /// Writes `buf`. Blocking mode writes all of it (as a blocking socket `send` does) unless an error comes
    /// after part of it was sent, which then reports the part; non-blocking mode writes what fits.
    pub async fn write(&mut self, buf: &[u8]) -> Result<usize, Errno> {
        let mut done = 0;
        loop {
            let Host::Stream(s) = self.host()? else {
                return Err(Errno::Notconn);
            };
            match (&*s).write(&buf[done..]) {
                Ok(n) => {
                    done += n;
                    if done == buf.len() || self.nonblocking {
                        return Ok(done);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.nonblocking {
                        return if done > 0 {
                            Ok(done)
                        } else {
                            Err(Errno::Again)
                        };
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return if done > 0 { Ok(done) } else { Err(errno(&e)) },
            }
            if let Err(e) = self.wait(Want::Write).await {
                return if done > 0 { Ok(done) } else { Err(e) };
            }
        }
    }

    pub fn shutdown(&self, how: Shutdown) -> Result<(), Errno> {
        match self.host()? {
            Host::Stream(s) => s.shutdown(how).map_err(|e| errno(&e)),
            Host::Listener(_) => Err(Errno::Notconn),
        }
    }

    /// Whether the socket is ready for `want` right now.
    pub fn ready_now(&self, want: Want) -> Result<Option<Ready>, Errno> {
        poll_now(self.host()?.as_fd(), want)
    }

    /// Waits until the socket is ready for `want`, whatever its blocking mode (poll and blocking calls).
    pub async fn wait(&mut self, want: Want) -> Result<Ready, Errno> {
        wait_registered(self.registered()?, want).await
    }

    async fn wait_or_again(&mut self, want: Want) -> Result<(), Errno> {
        if self.nonblocking {
            return Err(Errno::Again);
        }
        self.wait(want).await.map(|_| ())
    }
}

/// Waits on a registered socket: confirm with `poll(2)`, else wait for the reactor's next readiness and look
/// again. The reactor's readiness is cleared before looking again, so one arriving in between is never lost.
pub async fn wait_registered(fd: &AsyncFd<Host>, want: Want) -> Result<Ready, Errno> {
    let interest = match want {
        Want::Read => Interest::READABLE,
        Want::Write => Interest::WRITABLE,
    };
    loop {
        if let Some(ready) = poll_now(fd.get_ref().as_fd(), want)? {
            return Ok(ready);
        }
        let mut guard = fd.ready(interest).await.map_err(|e| errno(&e))?;
        guard.clear_ready();
    }
}

/// A zero-timeout `poll(2)` of one socket.
fn poll_now(fd: BorrowedFd<'_>, want: Want) -> Result<Option<Ready>, Errno> {
    let events = match want {
        // Not POLLRDHUP: nix's `revents` is `None` when a bit it does not name is set. A peer's half-close
        // shows as POLLIN (the read returns 0), as for a plain `poll(2)` caller.
        Want::Read => PollFlags::POLLIN,
        Want::Write => PollFlags::POLLOUT,
    };
    let mut fds = [PollFd::new(fd, events)];
    loop {
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(_) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(errno(&io::Error::from(e))),
        }
    }
    let revents = fds[0].revents().unwrap_or(PollFlags::empty());
    let hangup = revents.intersects(PollFlags::POLLHUP | PollFlags::POLLERR);
    let ready = revents.intersects(events | PollFlags::POLLHUP | PollFlags::POLLERR);
    Ok(ready.then_some(Ready { hangup }))
}

/// The p1 errno for a host socket error.
pub fn errno(e: &io::Error) -> Errno {
    match e.raw_os_error() {
        Some(libc::EAGAIN) => Errno::Again,
        Some(libc::EINTR) => Errno::Intr,
        Some(libc::EPIPE) => Errno::Pipe,
        Some(libc::ECONNRESET) => Errno::Connreset,
        Some(libc::ECONNABORTED) => Errno::Connaborted,
        Some(libc::ECONNREFUSED) => Errno::Connrefused,
        Some(libc::ENOTCONN) => Errno::Notconn,
        Some(libc::ETIMEDOUT) => Errno::Timedout,
        Some(libc::EMFILE) => Errno::Mfile,
        Some(libc::ENFILE) => Errno::Nfile,
        Some(libc::ENOBUFS) => Errno::Nobufs,
        Some(libc::ENOMEM) => Errno::Nomem,
        Some(libc::EINVAL) => Errno::Inval,
        Some(libc::EBADF) => Errno::Badf,
        Some(libc::EHOSTUNREACH) => Errno::Hostunreach,
        Some(libc::ENETDOWN) => Errno::Netdown,
        Some(libc::ENETUNREACH) => Errno::Netunreach,
        Some(libc::ENETRESET) => Errno::Netreset,
        _ => Errno::Io,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn pair() -> (Socket, TcpStream) {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        (Socket::stream(server, false).unwrap(), client)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn blocking_read_waits_on_the_reactor_not_the_thread() {
        let (mut server, mut client) = pair();
        let reader = async {
            let mut buf = [0u8; 16];
            let n = server.read(&mut buf, false).await.unwrap();
            buf[..n].to_vec()
        };
        // On a current-thread runtime a thread-blocking read would never let the writer run.
        let writer = async {
            tokio::task::yield_now().await;
            client.write_all(b"hello").unwrap();
        };
        let (got, ()) = tokio::join!(reader, writer);
        assert_eq!(got, b"hello");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn nonblocking_calls_answer_again() {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let mut listener = Socket::listener(l).unwrap();
        listener.nonblocking = true;
        assert_eq!(listener.accept().await.unwrap_err(), Errno::Again);
        let (mut server, _client) = pair();
        server.nonblocking = true;
        assert_eq!(server.read(&mut [0; 4], false).await, Err(Errno::Again));
        assert_eq!(server.ready_now(Want::Read), Ok(None));
        assert!(server.ready_now(Want::Write).unwrap().is_some());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn readiness_and_hangup() {
        let (mut server, mut client) = pair();
        client.write_all(b"x").unwrap();
        let ready = server.wait(Want::Read).await.unwrap();
        assert!(!ready.hangup);
        // Peeking leaves the byte for the read.
        let mut buf = [0u8; 4];
        assert_eq!(server.read(&mut buf, true).await, Ok(1));
        assert_eq!(server.read(&mut buf, false).await, Ok(1));
        // The peer's end of file wakes a reader, which then reads 0.
        drop(client);
        let ready = server.wait(Want::Read).await.unwrap();
        assert!(!ready.hangup);
        assert_eq!(server.read(&mut buf, false).await, Ok(0));
        // With our side shut too the connection is hung up.
        server.shutdown(Shutdown::Write).unwrap();
        assert!(server.wait(Want::Read).await.unwrap().hangup);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn listeners_accept_and_refuse_stream_calls() {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = l.local_addr().unwrap();
        let mut listener = Socket::listener(l).unwrap();
        assert_eq!(listener.ready_now(Want::Read), Ok(None));
        let _client = TcpStream::connect(addr).unwrap();
        assert!(listener.wait(Want::Read).await.is_ok());
        assert!(listener.accept().await.is_ok());
        assert_eq!(listener.read(&mut [0; 1], false).await, Err(Errno::Notconn));
        assert_eq!(listener.write(b"x").await, Err(Errno::Notconn));
        assert_eq!(listener.shutdown(Shutdown::Both), Err(Errno::Notconn));
    }
}
