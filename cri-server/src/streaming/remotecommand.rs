//! Exec and attach sessions (the "remotecommand" protocol family, `channel.k8s.io` v1 to v5).
//!
//! Over SPDY the client opens one stream per standard stream, tagged by the `streamtype` header: `error`
//! first, then `stdin`, `stdout`, `stderr` as asked, and `resize` with a terminal from v3 on. Over WebSocket
//! the same streams are fixed channels 0..=4. Either way the session then runs the same: the runtime gets
//! byte pipes, output is copied out until the runtime closes it, and only then the outcome is written on
//! the error stream (v4+: a `metav1.Status` with the exit code) and the connection is closed.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use proto::cri::{AttachRequest, ExecRequest};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::backend::{StreamBackend, StreamIo, StreamReader, StreamWriter};
use super::http::{HttpConn, RequestHead, Transport, choose};
use super::pipe::{Outbound, forward_resizes, pump_in, pump_out};
use super::spdy::{IncomingStream, Session};
use super::status::{Outcome, encode};
use super::websocket::channels::demux;
use super::websocket::{ChannelWriter, WsSession};
use super::{ConnRead, ConnWrite};
use crate::error::chain;

/// SPDY protocol versions, newest first. Over SPDY, v5 behaves as v4 (its close signal is WebSocket-only);
/// client-go offers v5 first, the kubelet itself would settle on v4.
pub const SPDY_PROTOCOLS: [&str; 5] = [
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];
/// WebSocket subprotocols (binary framing only; the base64 variants are not served). `""` is a client that
/// names no protocol, served as `channel.k8s.io` like the kubelet does.
pub const WS_PROTOCOLS: [&str; 4] = [
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "channel.k8s.io",
    "",
];

/// How long a SPDY client may take to open its streams (the kubelet's StreamCreationTimeout).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for the client to hang up after the session's last byte.
const LINGER: Duration = Duration::from_secs(5);
/// Buffer between a transport stream and the runtime's reader/writer.
const PIPE: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Version {
    V1,
    V2,
    V3,
    V4,
    V5,
}

impl Version {
    fn of(protocol: &str) -> Version {
        match protocol {
            "v5.channel.k8s.io" => Version::V5,
            "v4.channel.k8s.io" => Version::V4,
            "v3.channel.k8s.io" => Version::V3,
            "v2.channel.k8s.io" => Version::V2,
            _ => Version::V1,
        }
    }
}

/// Which streams the request asked for.
#[derive(Debug, Clone, Copy)]
struct Options {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

impl Options {
    fn new(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> Options {
        // A terminal has one output; the CRI methods already refuse tty with stderr.
        Options {
            stdin,
            stdout,
            stderr: stderr && !tty,
            tty,
        }
    }
}

enum Action {
    Exec {
        container_id: String,
        cmd: Vec<String>,
    },
    Attach {
        container_id: String,
    },
}

pub async fn serve_exec(
    conn: HttpConn,
    head: &RequestHead,
    req: ExecRequest,
    backend: Arc<dyn StreamBackend>,
) {
    let opts = Options::new(req.stdin, req.stdout, req.stderr, req.tty);
    let action = Action::Exec {
        container_id: req.container_id,
        cmd: req.cmd,
    };
    serve(conn, head, opts, action, backend).await
}

pub async fn serve_attach(
    conn: HttpConn,
    head: &RequestHead,
    req: AttachRequest,
    backend: Arc<dyn StreamBackend>,
) {
    let opts = Options::new(req.stdin, req.stdout, req.stderr, req.tty);
    let action = Action::Attach {
        container_id: req.container_id,
    };
    serve(conn, head, opts, action, backend).await
}

async fn serve(
    conn: HttpConn,
    head: &RequestHead,
    opts: Options,
    action: Action,
    backend: Arc<dyn StreamBackend>,
) {
    let transport = match choose(head, &SPDY_PROTOCOLS, &WS_PROTOCOLS) {
        Ok(t) => t,
        Err(refusal) => {
            debug!(status = refusal.status, why = %refusal.body, "streaming upgrade refused");
            conn.refuse(refusal).await;
            return;
        }
    };
    let (read, write) = match conn.accept(head, transport).await {
        Ok(halves) => halves,
        Err(err) => {
            debug!(error = %err, "streaming client went away during the upgrade");
            return;
        }
    };
    info!(
        ?transport,
        kind = action.kind(),
        container_id = action.container_id(),
        tty = opts.tty,
        "streaming session started"
    );
    match transport {
        Transport::Spdy(p) => serve_spdy(read, write, Version::of(p), opts, action, backend).await,
        Transport::WebSocket(p) => {
            serve_ws(read, write, Version::of(p), opts, action, backend).await
        }
    }
}

impl Action {
    fn kind(&self) -> &'static str {
        match self {
            Action::Exec { .. } => "exec",
            Action::Attach { .. } => "attach",
        }
    }

    fn container_id(&self) -> &str {
        match self {
            Action::Exec { container_id, .. } | Action::Attach { container_id } => container_id,
        }
    }
}

/// The transport-independent streams of a session.
struct Wiring {
    stdin: Option<mpsc::Receiver<Bytes>>,
    stdout: Option<Outbound>,
    stderr: Option<Outbound>,
    error: Outbound,
    resize: Option<mpsc::Receiver<Bytes>>,
}

async fn serve_spdy(
    read: ConnRead,
    write: ConnWrite,
    version: Version,
    opts: Options,
    action: Action,
    backend: Arc<dyn StreamBackend>,
) {
    let mut session = Session::start(read, write);
    let wants_resize = opts.tty && version >= Version::V3;
    let expected = 1
        + usize::from(opts.stdin)
        + usize::from(opts.stdout)
        + usize::from(opts.stderr)
        + usize::from(wants_resize);
    let collected = tokio::time::timeout(
        STREAM_CREATION_TIMEOUT,
        collect_streams(&mut session.incoming, expected),
    )
    .await;
    let Ok(Some(mut streams)) = collected else {
        warn!(
            expected,
            "streaming client did not open the streams its request asked for"
        );
        session.close(LINGER).await;
        return;
    };
    let Some(error) = streams.error.take() else {
        warn!("streaming client opened no error stream");
        session.close(LINGER).await;
        return;
    };
    let mut keep = Vec::new();
    let mut input = |s: Option<IncomingStream>, wanted: bool| {
        let s = s.filter(|_| wanted)?;
        keep.push(s.writer);
        Some(s.inbound)
    };
    let stdin = input(streams.stdin.take(), opts.stdin);
    let resize = input(streams.resize.take(), wants_resize);
    let output = |s: Option<IncomingStream>, wanted: bool| {
        s.filter(|_| wanted).map(|s| Outbound::Spdy(s.writer))
    };
    let wiring = Wiring {
        stdin,
        resize,
        stdout: output(streams.stdout.take(), opts.stdout),
        stderr: output(streams.stderr.take(), opts.stderr),
        error: Outbound::Spdy(error.writer),
    };
    // The client is gone when the session stops delivering (its reader saw the connection end). Streams
    // opened after the expected ones are refused meanwhile.
    let incoming = &mut session.incoming;
    let gone = async move {
        while let Some(extra) = incoming.recv().await {
            extra.refuse().await;
        }
    };
    run(wiring, version, opts, action, backend, gone).await;
    for w in keep {
        w.finish().await;
    }
    session.close(LINGER).await;
}

/// The streams of one SPDY session, by type.
#[derive(Default)]
struct SpdyStreams {
    error: Option<IncomingStream>,
    stdin: Option<IncomingStream>,
    stdout: Option<IncomingStream>,
    stderr: Option<IncomingStream>,
    resize: Option<IncomingStream>,
}

/// Accepts streams until `expected` are open; `None` if the connection ends first. Unknown or repeated
/// stream types are refused, which fails the client's CreateStream at once instead of after a timeout.
async fn collect_streams(
    incoming: &mut mpsc::Receiver<IncomingStream>,
    expected: usize,
) -> Option<SpdyStreams> {
    let mut streams = SpdyStreams::default();
    let mut count = 0;
    while count < expected {
        let stream = incoming.recv().await?;
        let slot = match stream.headers.get("streamtype") {
            Some("error") => &mut streams.error,
            Some("stdin") => &mut streams.stdin,
            Some("stdout") => &mut streams.stdout,
            Some("stderr") => &mut streams.stderr,
            Some("resize") => &mut streams.resize,
            other => {
                debug!(stream_type = ?other, "refusing a stream of unknown type");
                stream.refuse().await;
                continue;
            }
        };
        if slot.is_some() {
            stream.refuse().await;
            continue;
        }
        stream.accept().await.ok()?;
        *slot = Some(stream);
        count += 1;
    }
    Some(streams)
}

async fn serve_ws(
    read: ConnRead,
    write: ConnWrite,
    version: Version,
    opts: Options,
    action: Action,
    backend: Arc<dyn StreamBackend>,
) {
    let (ws, incoming) = WsSession::start(read, write);
    let mut routes: Vec<Option<mpsc::Sender<Bytes>>> = vec![None, None, None, None, None];
    let mut route = |channel: usize| {
        let (tx, rx) = mpsc::channel(16);
        routes[channel] = Some(tx);
        rx
    };
    let stdin = opts.stdin.then(|| route(0));
    let resize = opts.tty.then(|| route(4));
    let mut demuxer = tokio::spawn(demux(incoming, routes, version >= Version::V5));
    let channel = |n: u8| Outbound::Ws(ChannelWriter::new(n, ws.sender.clone()));
    let wiring = Wiring {
        stdin,
        resize,
        stdout: opts.stdout.then(|| channel(1)),
        stderr: opts.stderr.then(|| channel(2)),
        error: channel(3),
    };
    // An empty message on the lowest writable channel tells the client the streams are ready, as the
    // kubelet does.
    let first = wiring
        .stdout
        .as_ref()
        .or(wiring.stderr.as_ref())
        .unwrap_or(&wiring.error);
    let _ = first.write(Bytes::new()).await;
    // The demultiplexer ends when the client's side of the connection does.
    let gone = async {
        let _ = (&mut demuxer).await;
    };
    run(wiring, version, opts, action, backend, gone).await;
    demuxer.abort();
    ws.close(LINGER).await;
}

/// Runs the exec or attach with pipes to the transport streams and writes the outcome on the error stream.
/// If the client goes away first (`gone` completes), the runtime's future is dropped, which ends the
/// command.
async fn run(
    wiring: Wiring,
    version: Version,
    opts: Options,
    action: Action,
    backend: Arc<dyn StreamBackend>,
    gone: impl Future<Output = ()>,
) {
    let mut background: Vec<JoinHandle<()>> = Vec::new();
    let mut outputs: Vec<JoinHandle<u64>> = Vec::new();
    let stdin = wiring.stdin.map(|rx| {
        let (ours, theirs) = tokio::io::duplex(PIPE);
        background.push(tokio::spawn(pump_in(rx, ours)));
        Box::new(theirs) as StreamReader
    });
    let mut output = |out: Option<Outbound>| {
        out.map(|out| {
            let (ours, theirs) = tokio::io::duplex(PIPE);
            outputs.push(tokio::spawn(async move { pump_out(ours, &out).await }));
            Box::new(theirs) as StreamWriter
        })
    };
    let stdout = output(wiring.stdout);
    let stderr = output(wiring.stderr);
    let resize = wiring.resize.filter(|_| opts.tty).map(|rx| {
        let (tx, sizes) = mpsc::channel(8);
        background.push(tokio::spawn(forward_resizes(rx, tx)));
        sizes
    });
    let io = StreamIo {
        stdin,
        stdout,
        stderr,
        resize,
    };
    let kind = action.kind();
    let work = async {
        match action {
            Action::Exec { container_id, cmd } => {
                match backend.exec(container_id, cmd, opts.tty, io).await {
                    Ok(0) => Outcome::Success,
                    Ok(code) => Outcome::ExitCode(code),
                    Err(err) => Outcome::Failed(format!(
                        "error executing command in container: {}",
                        chain(&err)
                    )),
                }
            }
            Action::Attach { container_id } => {
                match backend.attach(container_id, opts.tty, io).await {
                    Ok(()) => Outcome::Success,
                    Err(err) => {
                        Outcome::Failed(format!("error attaching to container: {}", chain(&err)))
                    }
                }
            }
        }
    };
    let outcome = tokio::select! {
        outcome = work => Some(outcome),
        () = gone => None,
    };
    // The runtime has dropped its ends of the pipes: wait until their last bytes are out, so the status
    // comes after all output.
    for o in outputs {
        let _ = o.await;
    }
    for b in background {
        b.abort();
    }
    let Some(outcome) = outcome else {
        info!(kind, "streaming client went away; session ended");
        return;
    };
    if let Some(bytes) = encode(&outcome, version >= Version::V4) {
        let _ = wiring.error.write(Bytes::from(bytes)).await;
    }
    wiring.error.finish().await;
    match &outcome {
        Outcome::Failed(why) => warn!(kind, error = %why, "streaming session failed"),
        _ => info!(kind, ?outcome, "streaming session ended"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_protocol_names() {
        assert_eq!(Version::of("v5.channel.k8s.io"), Version::V5);
        assert_eq!(Version::of("v4.channel.k8s.io"), Version::V4);
        assert_eq!(Version::of("channel.k8s.io"), Version::V1);
        assert_eq!(Version::of(""), Version::V1);
        assert!(Version::V5 >= Version::V4 && Version::V3 < Version::V4);
    }

    #[test]
    fn tty_drops_stderr() {
        let o = Options::new(true, true, true, true);
        assert!(!o.stderr && o.stdout && o.stdin);
    }
}
