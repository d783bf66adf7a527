//! The guest's socket descriptors: which p1 fd numbers are sockets, and how new numbers are chosen.
//!
//! wasmtime-wasi keeps its own descriptor table (stdio, pre-opens, opened files) that we cannot add entries to.
//! It numbers from 0 and always takes a freed number or the one after its highest, so its numbers never exceed
//! the count of descriptors it holds at once, and every one beyond stdio holds a host fd of the pod process.
//! Socket fds therefore live from [`FIRST_SOCKET_FD`] (2^30) up: wasmtime-wasi would need a billion open files
//! to get there, far beyond `RLIMIT_NOFILE` (the kernel's `fs.nr_open` defaults to 2^20) and the kernel memory
//! a billion open files take. Every shadowed p1 call asks this table first. A freed socket number is reused
//! (lowest first, as POSIX does for fds).

use std::collections::BTreeMap;

use super::socket::Socket;

/// The first socket fd; the pre-opened listeners are numbered from here in the order their ports were given.
pub const FIRST_SOCKET_FD: u32 = 1 << 30;

/// Most sockets one instance may hold at once (listeners and connections): a bound on host memory and fds;
/// beyond it `sock_accept` answers `nfile`.
pub const MAX_SOCKETS: usize = 16 * 1024;

/// The table is full ([`MAX_SOCKETS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableFull;

/// Socket descriptors of one instance.
#[derive(Debug)]
pub struct SocketTable {
    sockets: BTreeMap<u32, Socket>,
    limit: usize,
}

impl Default for SocketTable {
    fn default() -> SocketTable {
        SocketTable::with_limit(MAX_SOCKETS)
    }
}

impl SocketTable {
    fn with_limit(limit: usize) -> SocketTable {
        SocketTable {
            sockets: BTreeMap::new(),
            limit,
        }
    }

    /// Whether `fd` (the guest's i32 bit pattern) names a socket of this table.
    pub fn contains(&self, fd: i32) -> bool {
        self.sockets.contains_key(&fd.cast_unsigned())
    }

    pub fn get_mut(&mut self, fd: i32) -> Option<&mut Socket> {
        self.sockets.get_mut(&fd.cast_unsigned())
    }

    pub fn get(&self, fd: i32) -> Option<&Socket> {
        self.sockets.get(&fd.cast_unsigned())
    }

    /// Adds `socket` under the lowest free number from [`FIRST_SOCKET_FD`]; returns that number.
    pub fn insert(&mut self, socket: Socket) -> Result<u32, TableFull> {
        if self.sockets.len() >= self.limit {
            return Err(TableFull);
        }
        let mut fd = FIRST_SOCKET_FD;
        for &used in self.sockets.keys() {
            if used != fd {
                break;
            }
            fd += 1;
        }
        self.sockets.insert(fd, socket);
        Ok(fd)
    }

    /// Takes the socket out of the table; dropping it closes the host socket.
    pub fn remove(&mut self, fd: i32) -> Option<Socket> {
        self.sockets.remove(&fd.cast_unsigned())
    }

    pub fn len(&self) -> usize {
        self.sockets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::{Ipv4Addr, TcpListener};

    use super::*;

    fn listener() -> Socket {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        Socket::listener(l).unwrap()
    }

    fn fd(n: u32) -> i32 {
        n.cast_signed()
    }

    #[test]
    fn numbers_start_above_anything_wasmtime_assigns() {
        let mut t = SocketTable::default();
        assert_eq!(t.insert(listener()).unwrap(), FIRST_SOCKET_FD);
        assert_eq!(t.insert(listener()).unwrap(), FIRST_SOCKET_FD + 1);
        // The guest sees fds as C ints: every socket number must stay positive.
        let highest = FIRST_SOCKET_FD + u32::try_from(MAX_SOCKETS).unwrap();
        assert!(fd(highest) > 0);
        assert!(!t.contains(3));
        assert!(t.contains(fd(FIRST_SOCKET_FD)));
    }

    #[test]
    fn freed_numbers_are_reused_lowest_first() {
        let mut t = SocketTable::default();
        for _ in 0..4 {
            t.insert(listener()).unwrap();
        }
        assert!(t.remove(fd(FIRST_SOCKET_FD + 2)).is_some());
        assert!(t.remove(fd(FIRST_SOCKET_FD + 1)).is_some());
        assert!(t.remove(fd(FIRST_SOCKET_FD + 1)).is_none());
        assert!(!t.contains(fd(FIRST_SOCKET_FD + 1)));
        assert_eq!(t.insert(listener()).unwrap(), FIRST_SOCKET_FD + 1);
        assert_eq!(t.insert(listener()).unwrap(), FIRST_SOCKET_FD + 2);
        assert_eq!(t.insert(listener()).unwrap(), FIRST_SOCKET_FD + 4);
        assert_eq!(t.len(), 5);
    }

    #[test]
    fn the_table_is_bounded() {
        let mut t = SocketTable::with_limit(3);
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        for _ in 0..3 {
            t.insert(Socket::listener(l.try_clone().unwrap()).unwrap())
                .unwrap();
        }
        assert_eq!(
            t.insert(Socket::listener(l.try_clone().unwrap()).unwrap()),
            Err(TableFull)
        );
    }

    #[test]
    fn closing_releases_the_host_socket() {
        let mut t = SocketTable::default();
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        let n = t.insert(Socket::listener(l).unwrap()).unwrap();
        drop(t.remove(fd(n)));
        // The port is free again once the table let go of the socket.
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
    }
}
