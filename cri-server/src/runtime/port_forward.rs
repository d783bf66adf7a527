//! CRI `PortForward`: checks the sandbox and returns a one-time streaming URL; connections are dialled when
//! the client forwards them ([`Runtime::dial_pod_port`]).
//!
//! A pod's loopback lives in its own network namespace, so the daemon cannot just connect to 127.0.0.1.
//! Joining the namespace (`setns`) changes only the calling thread, so the dial happens on a dedicated
//! thread that is thrown away afterwards, never on a tokio worker; the connected socket stays in the pod's
//! namespace wherever it is used later.

use std::fs::File;
use std::io;
use std::net::{Ipv6Addr, SocketAddr, TcpStream as StdTcpStream};
use std::path::PathBuf;
use std::time::Duration;

use nix::sched::{CloneFlags, setns};
use proto::cri::{PortForwardRequest, PortForwardResponse};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tracing::debug;

use super::Runtime;
use crate::error::ServerError;
use crate::state::SandboxState;
use crate::streaming::StreamRequest;

/// A pod port that neither accepts nor refuses within this time is reported as unreachable.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

impl Runtime {
    pub fn port_forward(
        &self,
        req: PortForwardRequest,
    ) -> Result<PortForwardResponse, ServerError> {
        let s = self.store.sandbox(&req.pod_sandbox_id)?;
        if s.state() != SandboxState::Ready {
            return Err(ServerError::FailedPrecondition(format!(
                "pod sandbox {} is not ready; ports can only be forwarded to a ready pod",
                s.meta.id
            )));
        }
        if let Some(bad) = req.port.iter().find(|p| !(1..=65535).contains(*p)) {
            return Err(ServerError::InvalidArgument(format!(
                "port {bad} is not a TCP port number"
            )));
        }
        let url = self.stream_url(StreamRequest::PortForward(PortForwardRequest {
            pod_sandbox_id: s.meta.id.clone(),
            ..req
        }))?;
        Ok(PortForwardResponse { url })
    }

    /// Opens a TCP connection to `port` on the pod's loopback (IPv4, then IPv6), inside the pod's network
    /// namespace, or the node's for a hostNetwork pod.
    pub async fn dial_pod_port(&self, pod_id: &str, port: u16) -> Result<TcpStream, ServerError> {
        let s = self.store.sandbox(pod_id)?;
        if s.state() != SandboxState::Ready {
            return Err(ServerError::FailedPrecondition(format!(
                "pod sandbox {} is not ready",
                s.meta.id
            )));
        }
        let netns = s.meta.netns.clone();
        let op = || format!("connecting to port {port} in pod {}", s.meta.id);
        let conn = match netns {
            Some(path) => dial_in_netns(path, port).await,
            None => dial_loopback(port),
        }
        .map_err(|source| ServerError::Stream { op: op(), source })?;
        conn.set_nonblocking(true)
            .and_then(|()| TcpStream::from_std(conn))
            .map_err(|source| ServerError::Stream { op: op(), source })
    }
}

/// Dials on a throw-away thread that first joins the namespace pinned at `netns`.
async fn dial_in_netns(netns: PathBuf, port: u16) -> io::Result<StdTcpStream> {
    let (tx, rx) = oneshot::channel();
    std::thread::Builder::new()
        .name("netns-dial".into())
        .spawn(move || {
            let result = File::open(&netns).and_then(|ns| {
                setns(&ns, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
                debug!(netns = %netns.display(), port, "dialling inside the pod network namespace");
                dial_loopback(port)
            });
            // This thread is now in the pod's namespace and ends here, so no other work ever runs in it.
            let _ = tx.send(result);
        })?;
    rx.await
        .map_err(|_| io::Error::other("the network namespace dialler thread panicked"))?
}

/// Connects to `port` on 127.0.0.1, falling back to ::1 (a server may listen on IPv6 only), like the
/// kubelet's runtimes dial "localhost".
fn dial_loopback(port: u16) -> io::Result<StdTcpStream> {
    let v4 = SocketAddr::from(([127, 0, 0, 1], port));
    match StdTcpStream::connect_timeout(&v4, DIAL_TIMEOUT) {
        Ok(conn) => Ok(conn),
        Err(err) => {
            let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
            StdTcpStream::connect_timeout(&v6, DIAL_TIMEOUT).map_err(|_| err)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn dial_loopback_reaches_a_local_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut conn = dial_loopback(port).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        conn.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        server.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
    }

    #[test]
    fn dial_loopback_reports_refusal() {
        // Bind then drop to find a port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert!(dial_loopback(port).is_err());
    }
}
