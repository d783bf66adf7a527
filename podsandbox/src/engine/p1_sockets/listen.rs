//! Pre-opened listening sockets for preview 1 guests, socket-activation style: what is bound, and what the
//! guest is told about it.
//!
//! Each listen port is bound as a TCP listener on all addresses of the pod process's network namespace (the
//! pod's own, or the node's for hostNetwork pods): `[::]` with `IPV6_V6ONLY` off, so IPv4 clients reach it
//! too, or `0.0.0.0` where the namespace has no IPv6. `SO_REUSEADDR` lets a restarted container bind again
//! while connections of its previous run linger in `TIME_WAIT`.
//!
//! The guest learns about them from its environment: `LISTEN_FDS` (how many), `LISTEN_FDS_START` (the fd of
//! the first one; they are consecutive, in the order of the ports) and `LISTEN_FDNAMES` (`tcp-<port>` per fd,
//! colon-separated, as systemd names them). systemd's fixed start of 3 is impossible under WASI preview 1:
//! fds from 3 are the pre-opened directories, whose scan by wasi-libc stops at the first fd that is not one.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket as RawSocket, Type};

use super::socket::Socket;
use super::table::{FIRST_SOCKET_FD, SocketTable};

/// Pending connections the kernel queues per listener before the guest accepts them.
const BACKLOG: i32 = 1024;

/// Environment variables this module sets; a guest with listeners sees only ours, not the image's.
pub const ENV_NAMES: [&str; 3] = ["LISTEN_FDS", "LISTEN_FDS_START", "LISTEN_FDNAMES"];

/// A listen port that could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("binding TCP port {port} on all addresses of the pod's network namespace")]
    Bind {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("more listen ports than a guest can hold ({count})")]
    TooMany { count: usize },
}

/// The bound listeners of one instance, in port order, and their environment.
#[derive(Debug, Default)]
pub struct Listeners {
    ports: Vec<u16>,
    sockets: Vec<TcpListener>,
}

impl Listeners {
    /// Binds every port in `ports` (already de-duplicated by the daemon; a repeat would fail as in use).
    pub fn bind(ports: &[u16]) -> Result<Listeners, ListenError> {
        let mut sockets = Vec::with_capacity(ports.len());
        for &port in ports {
            let listener = bind_any(port).map_err(|source| ListenError::Bind { port, source })?;
            sockets.push(listener);
        }
        Ok(Listeners {
            ports: ports.to_vec(),
            sockets,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    /// `LISTEN_FDS`, `LISTEN_FDS_START` and `LISTEN_FDNAMES` for the guest; empty without listeners.
    pub fn env(&self) -> Vec<(String, String)> {
        if self.sockets.is_empty() {
            return Vec::new();
        }
        let names: Vec<String> = self.ports.iter().map(|p| format!("tcp-{p}")).collect();
        vec![
            ("LISTEN_FDS".into(), self.sockets.len().to_string()),
            ("LISTEN_FDS_START".into(), FIRST_SOCKET_FD.to_string()),
            ("LISTEN_FDNAMES".into(), names.join(":")),
        ]
    }

    /// The bound listeners with their ports, for a server of the pod process's own (wasi:http handlers).
    pub fn into_listeners(self) -> impl Iterator<Item = (u16, TcpListener)> {
        self.ports.into_iter().zip(self.sockets)
    }

    /// Moves the listeners into a fresh socket table, at `FIRST_SOCKET_FD` and up.
    pub fn into_table(self) -> Result<SocketTable, ListenError> {
        let count = self.sockets.len();
        let mut table = SocketTable::default();
        for (port, l) in self.ports.into_iter().zip(self.sockets) {
            let socket =
                Socket::listener(l).map_err(|source| ListenError::Bind { port, source })?;
            table
                .insert(socket)
                .map_err(|_| ListenError::TooMany { count })?;
        }
        Ok(table)
    }
}

/// A listener on `port` of every address: dual-stack IPv6, or IPv4 where IPv6 is not available.
fn bind_any(port: u16) -> std::io::Result<TcpListener> {
    let v6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
    match listen_on(v6, true) {
        Ok(l) => Ok(l),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL | libc::EPROTONOSUPPORT)
            ) =>
        {
            listen_on(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)), false)
        }
        Err(e) => Err(e),
    }
}

fn listen_on(addr: SocketAddr, dual_stack: bool) -> std::io::Result<TcpListener> {
    let socket = RawSocket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if dual_stack {
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::TcpStream;

    use super::*;

    fn free_port() -> u16 {
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[test]
    fn listeners_take_ipv4_clients_and_describe_themselves() {
        let (a, b) = (free_port(), free_port());
        let l = Listeners::bind(&[a, b]).unwrap();
        TcpStream::connect((Ipv4Addr::LOCALHOST, a)).unwrap();
        let env = l.env();
        assert_eq!(env[0], ("LISTEN_FDS".into(), "2".into()));
        assert_eq!(env[1], ("LISTEN_FDS_START".into(), "1073741824".into()));
        assert_eq!(
            env[2],
            ("LISTEN_FDNAMES".into(), format!("tcp-{a}:tcp-{b}"))
        );
        let table = l.into_table().unwrap();
        assert!(
            table
                .get(FIRST_SOCKET_FD.cast_signed())
                .unwrap()
                .is_listener()
        );
        assert!(table.contains((FIRST_SOCKET_FD + 1).cast_signed()));
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn a_port_in_use_is_an_error_naming_it() {
        let taken = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        let port = taken.local_addr().unwrap().port();
        let err = Listeners::bind(&[port]).unwrap_err();
        assert!(err.to_string().contains(&port.to_string()), "{err}");
        assert!(matches!(err, ListenError::Bind { .. }));
    }

    #[test]
    fn no_ports_no_environment() {
        let l = Listeners::bind(&[]).unwrap();
        assert!(l.is_empty());
        assert!(l.env().is_empty());
    }
}
