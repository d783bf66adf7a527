//! What the streaming server asks of the runtime: run a command in a container, attach to one, or open a TCP
//! connection to a port inside a pod. The HTTP, SPDY and WebSocket code knows nothing of pods; the daemon
//! implements this trait in `runtime::stream_backend`, tests implement fakes.

use futures::future::BoxFuture;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::error::ServerError;

/// A terminal size as the client sends it on the resize stream: one JSON object per change,
/// `{"Width":80,"Height":24}` (client-go's `remotecommand.TerminalSize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct TermSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

/// The byte source a command's stdin reads from.
pub type StreamReader = Box<dyn AsyncRead + Send + Unpin>;
/// The byte sink a command's stdout or stderr writes to.
pub type StreamWriter = Box<dyn AsyncWrite + Send + Unpin>;

/// The streams a client asked for. A stream the client did not ask for is `None` (with `tty`, `stderr` is
/// always `None`: the terminal carries both outputs on stdout).
///
/// Contract: when the backend's future completes, it must have dropped (or shut down) `stdout` and `stderr`,
/// because the server sends the exit status only after both have reached end-of-file, so that no output is
/// lost or arrives after the status.
pub struct StreamIo {
    pub stdin: Option<StreamReader>,
    pub stdout: Option<StreamWriter>,
    pub stderr: Option<StreamWriter>,
    /// Terminal size changes, only with `tty`; the first one usually arrives right after the session starts.
    pub resize: Option<mpsc::Receiver<TermSize>>,
}

/// The runtime side of Exec, Attach and PortForward sessions.
pub trait StreamBackend: Send + Sync + 'static {
    /// Runs `cmd` in the container and returns its exit code once it has ended.
    fn exec(
        &self,
        container_id: String,
        cmd: Vec<String>,
        tty: bool,
        io: StreamIo,
    ) -> BoxFuture<'static, Result<i32, ServerError>>;

    /// Connects the streams to the container's main process until it exits or the client goes away.
    fn attach(
        &self,
        container_id: String,
        tty: bool,
        io: StreamIo,
    ) -> BoxFuture<'static, Result<(), ServerError>>;

    /// Opens a TCP connection to `port` on the pod's loopback interface.
    fn port_forward(
        &self,
        pod_id: String,
        port: u16,
    ) -> BoxFuture<'static, Result<TcpStream, ServerError>>;
}
