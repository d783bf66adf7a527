//! A SPDY/3.1 server session on one upgraded connection, as far as Kubernetes clients use SPDY: the client
//! opens streams (SYN_STREAM, odd ids) carrying a few headers, the server answers each with SYN_REPLY, and
//! both sides send DATA and end their half with FIN. No server push, no priorities.
//!
//! Two tasks per session: the reader parses frames and routes DATA to each stream's channel; the writer owns
//! the socket's write half and the header compressor, and sends frames in the order they were queued (so a
//! SYN_REPLY always precedes the DATA of its stream). Flow control is not enforced in either direction:
//! spdystream (the Go library behind client-go and the kubelet) neither sends nor honours WINDOW_UPDATE.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::debug;

use super::frame::{
    FLAG_FIN, Frame, RST_CANCEL, RST_PROTOCOL_ERROR, RST_REFUSED_STREAM, decode, encode,
};
use super::headers::{Deflater, Headers, Inflater};
use crate::streaming::{ConnRead, ConnWrite};

/// New streams waiting for the handler; more than this and further streams are refused.
const INCOMING_BACKLOG: usize = 32;
/// DATA payloads buffered per stream before the reader waits for the consumer.
const STREAM_BACKLOG: usize = 16;
const COMMAND_BACKLOG: usize = 64;

enum Cmd {
    Frame(Frame),
    GoAway,
}

/// The handler's side of a session.
pub struct Session {
    /// Streams the client opened, in order. Ends when the connection is gone.
    pub incoming: mpsc::Receiver<IncomingStream>,
    cmds: mpsc::Sender<Cmd>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

/// A stream the client opened. Answer with [`IncomingStream::accept`] or [`IncomingStream::refuse`].
pub struct IncomingStream {
    pub id: u32,
    pub headers: Headers,
    /// DATA from the client; closed by the client's FIN or RST_STREAM, or when the connection ends.
    pub inbound: mpsc::Receiver<Bytes>,
    pub writer: StreamWriter,
}

/// Sends DATA on one stream. Cheap to clone.
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    cmds: mpsc::Sender<Cmd>,
    /// Set when the client reset the stream: later writes fail instead of being sent into the void.
    reset: Arc<AtomicBool>,
    finished: Arc<AtomicBool>,
}

impl Session {
    /// Starts the reader and writer tasks on an upgraded connection.
    pub fn start(read: ConnRead, write: ConnWrite) -> Session {
        let (cmds, cmd_rx) = mpsc::channel(COMMAND_BACKLOG);
        let (incoming_tx, incoming) = mpsc::channel(INCOMING_BACKLOG);
        let last_stream = Arc::new(AtomicU32::new(0));
        let reader = tokio::spawn(read_loop(
            read,
            cmds.clone(),
            incoming_tx,
            Arc::clone(&last_stream),
        ));
        let writer = tokio::spawn(write_loop(write, cmd_rx, last_stream));
        Session {
            incoming,
            cmds,
            reader,
            writer,
        }
    }

    /// Ends the session: everything queued is sent, then GOAWAY, then our half of the connection is closed.
    /// Waits up to `linger` for the client to close its half, so that closing the socket with unread input
    /// cannot turn into a TCP reset that would discard data the client has not read yet.
    pub async fn close(mut self, linger: Duration) {
        // Bounded too: a client that stopped reading must not keep the session (and its task) alive.
        let (cmds, writer) = (&self.cmds, &mut self.writer);
        let _ = tokio::time::timeout(linger, async move {
            if cmds.send(Cmd::GoAway).await.is_ok() {
                let _ = writer.await;
            }
        })
        .await;
        let _ = tokio::time::timeout(linger, &mut self.reader).await;
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

impl IncomingStream {
    /// Sends SYN_REPLY: the client's CreateStream returns only once it has it.
    pub async fn accept(&self) -> io::Result<()> {
        self.writer
            .send(Frame::SynReply {
                stream: self.id,
                flags: 0,
                headers: Headers::new(),
            })
            .await
    }

    /// Refuses the stream with RST_STREAM.
    pub async fn refuse(self) {
        let _ = self
            .writer
            .send(Frame::RstStream {
                stream: self.id,
                status: RST_REFUSED_STREAM,
            })
            .await;
    }
}

impl StreamWriter {
    /// Sends `data` as one DATA frame (callers send at most 32 KiB at a time).
    pub async fn write(&self, data: Bytes) -> io::Result<()> {
        if self.reset.load(Ordering::SeqCst) {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the client reset the stream",
            ));
        }
        if data.is_empty() {
            return Ok(());
        }
        self.send(Frame::Data {
            stream: self.id,
            flags: 0,
            data,
        })
        .await
    }

    /// Ends our half of the stream (an empty DATA frame with FIN). Only the first call sends anything.
    pub async fn finish(&self) {
        if self.finished.swap(true, Ordering::SeqCst) || self.reset.load(Ordering::SeqCst) {
            return;
        }
        let _ = self
            .send(Frame::Data {
                stream: self.id,
                flags: FLAG_FIN,
                data: Bytes::new(),
            })
            .await;
    }

    /// Abandons the stream (RST_STREAM CANCEL).
    pub async fn reset(&self) {
        if self.reset.swap(true, Ordering::SeqCst) {
            return;
        }
        let _ = self
            .send(Frame::RstStream {
                stream: self.id,
                status: RST_CANCEL,
            })
            .await;
    }

    async fn send(&self, frame: Frame) -> io::Result<()> {
        self.cmds
            .send(Cmd::Frame(frame))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the connection is closed"))
    }
}

/// The reader's record of one stream.
struct Entry {
    /// `None` once the client ended its half.
    inbound: Option<mpsc::Sender<Bytes>>,
    reset: Arc<AtomicBool>,
}

async fn read_loop(
    mut read: ConnRead,
    cmds: mpsc::Sender<Cmd>,
    incoming: mpsc::Sender<IncomingStream>,
    last_stream: Arc<AtomicU32>,
) {
    let mut inflater = Inflater::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut streams: HashMap<u32, Entry> = HashMap::new();
    let mut going_away = false;
    loop {
        let frame = match decode(&buf, &mut inflater) {
            Ok(Some((frame, used))) => {
                buf.advance(used);
                frame
            }
            Ok(None) => match read.read_buf(&mut buf).await {
                Ok(0) => break,
                Ok(_) => continue,
                Err(err) => {
                    debug!(error = %err, "spdy connection read failed");
                    break;
                }
            },
            Err(err) => {
                debug!(error = %crate::error::chain(&err), "spdy protocol error; closing the connection");
                break;
            }
        };
        match frame {
            Frame::SynStream {
                stream,
                flags,
                headers,
                ..
            } => {
                if going_away {
                    continue;
                }
                // Client streams have odd, increasing ids.
                if stream % 2 == 0 || stream <= last_stream.load(Ordering::SeqCst) {
                    let _ = cmds
                        .send(Cmd::Frame(Frame::RstStream {
                            stream,
                            status: RST_PROTOCOL_ERROR,
                        }))
                        .await;
                    continue;
                }
                last_stream.store(stream, Ordering::SeqCst);
                let (tx, rx) = mpsc::channel(STREAM_BACKLOG);
                let reset = Arc::new(AtomicBool::new(false));
                streams.insert(
                    stream,
                    Entry {
                        inbound: (flags & FLAG_FIN == 0).then_some(tx),
                        reset: Arc::clone(&reset),
                    },
                );
                let new = IncomingStream {
                    id: stream,
                    headers,
                    inbound: rx,
                    writer: StreamWriter {
                        id: stream,
                        cmds: cmds.clone(),
                        reset,
                        finished: Arc::new(AtomicBool::new(false)),
                    },
                };
                // Never wait here for the handler: the reader must keep serving the other streams.
                if let Err(err) = incoming.try_send(new) {
                    let refused = match err {
                        mpsc::error::TrySendError::Full(s)
                        | mpsc::error::TrySendError::Closed(s) => s,
                    };
                    refused.refuse().await;
                }
            }
            Frame::Data {
                stream,
                flags,
                data,
            } => {
                let Some(entry) = streams.get_mut(&stream) else {
                    continue;
                };
                if !data.is_empty()
                    && let Some(tx) = &entry.inbound
                    && tx.send(data).await.is_err()
                {
                    // The handler does not read this stream; drop what the client sends on it.
                    entry.inbound = None;
                }
                if flags & FLAG_FIN != 0 {
                    entry.inbound = None;
                }
            }
            Frame::Headers { stream, flags, .. } => {
                if flags & FLAG_FIN != 0
                    && let Some(entry) = streams.get_mut(&stream)
                {
                    entry.inbound = None;
                }
            }
            Frame::RstStream { stream, .. } => {
                if let Some(entry) = streams.remove(&stream) {
                    entry.reset.store(true, Ordering::SeqCst);
                }
            }
            // Odd ids are the client's pings, to be echoed; even ones would answer ours (we send none).
            Frame::Ping { id } if id % 2 == 1 => {
                let _ = cmds.send(Cmd::Frame(Frame::Ping { id })).await;
            }
            Frame::GoAway { .. } => going_away = true,
            Frame::Ping { .. }
            | Frame::SynReply { .. }
            | Frame::Settings
            | Frame::WindowUpdate { .. }
            | Frame::Unknown { .. } => {}
        }
    }
    // Dropping `streams` ends every stream's inbound data; dropping `incoming` tells the handler.
}

async fn write_loop(
    mut write: ConnWrite,
    mut cmds: mpsc::Receiver<Cmd>,
    last_stream: Arc<AtomicU32>,
) {
    let mut deflater = Deflater::new();
    let mut out = Vec::with_capacity(64 * 1024);
    while let Some(cmd) = cmds.recv().await {
        out.clear();
        let last = matches!(cmd, Cmd::GoAway);
        let frame = match cmd {
            Cmd::Frame(frame) => frame,
            Cmd::GoAway => Frame::GoAway {
                last_good: last_stream.load(Ordering::SeqCst),
                status: 0,
            },
        };
        encode(&frame, &mut deflater, &mut out);
        if write.write_all(&out).await.is_err() || write.flush().await.is_err() {
            return;
        }
        if last {
            break;
        }
    }
    let _ = write.shutdown().await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A client end: writes frames with its own compressor, reads and decodes the server's.
    struct Client {
        io: tokio::io::DuplexStream,
        deflater: Deflater,
        inflater: Inflater,
        buf: BytesMut,
    }

    impl Client {
        async fn send(&mut self, frame: Frame) {
            let mut out = Vec::new();
            encode(&frame, &mut self.deflater, &mut out);
            self.io.write_all(&out).await.unwrap();
        }

        async fn recv(&mut self) -> Option<Frame> {
            loop {
                if let Some((f, used)) = decode(&self.buf, &mut self.inflater).unwrap() {
                    self.buf.advance(used);
                    return Some(f);
                }
                if self.io.read_buf(&mut self.buf).await.unwrap() == 0 {
                    return None;
                }
            }
        }
    }

    fn start() -> (Session, Client) {
        let (server, client) = tokio::io::duplex(1 << 16);
        let (r, w) = tokio::io::split(server);
        let session = Session::start(Box::new(r), Box::new(w));
        let client = Client {
            io: client,
            deflater: Deflater::new(),
            inflater: Inflater::new(),
            buf: BytesMut::new(),
        };
        (session, client)
    }

    fn syn(stream: u32, kind: &str, flags: u8) -> Frame {
        let mut headers = Headers::new();
        headers.push("streamtype", kind);
        Frame::SynStream {
            stream,
            associated: 0,
            priority: 0,
            flags,
            headers,
        }
    }

    #[tokio::test]
    async fn streams_are_replied_and_carry_data_both_ways() {
        let (mut session, mut client) = start();
        client.send(syn(1, "stdin", 0)).await;
        let mut s = session.incoming.recv().await.unwrap();
        assert_eq!((s.id, s.headers.get("streamtype")), (1, Some("stdin")));
        s.accept().await.unwrap();
        assert!(matches!(
            client.recv().await,
            Some(Frame::SynReply { stream: 1, .. })
        ));

        client
            .send(Frame::Data {
                stream: 1,
                flags: FLAG_FIN,
                data: Bytes::from_static(b"in"),
            })
            .await;
        assert_eq!(s.inbound.recv().await.unwrap(), Bytes::from_static(b"in"));
        assert!(s.inbound.recv().await.is_none(), "FIN ends inbound data");

        s.writer.write(Bytes::from_static(b"out")).await.unwrap();
        s.writer.finish().await;
        s.writer.finish().await;
        assert_eq!(
            client.recv().await,
            Some(Frame::Data {
                stream: 1,
                flags: 0,
                data: Bytes::from_static(b"out")
            })
        );
        assert_eq!(
            client.recv().await,
            Some(Frame::Data {
                stream: 1,
                flags: FLAG_FIN,
                data: Bytes::new()
            })
        );

        // Pings from the client come back; GOAWAY then EOF on close.
        client.send(Frame::Ping { id: 7 }).await;
        assert_eq!(client.recv().await, Some(Frame::Ping { id: 7 }));
        let closing = tokio::spawn(session.close(Duration::from_secs(5)));
        assert!(matches!(
            client.recv().await,
            Some(Frame::GoAway { last_good: 1, .. })
        ));
        assert_eq!(client.recv().await, None);
        drop(client);
        closing.await.unwrap();
    }

    #[tokio::test]
    async fn reused_or_even_stream_ids_are_rejected() {
        let (mut session, mut client) = start();
        client.send(syn(3, "error", 0)).await;
        let s = session.incoming.recv().await.unwrap();
        s.accept().await.unwrap();
        assert!(matches!(client.recv().await, Some(Frame::SynReply { .. })));
        client.send(syn(1, "stdout", 0)).await;
        assert_eq!(
            client.recv().await,
            Some(Frame::RstStream {
                stream: 1,
                status: RST_PROTOCOL_ERROR
            })
        );
        client.send(syn(4, "stdout", 0)).await;
        assert!(matches!(
            client.recv().await,
            Some(Frame::RstStream { stream: 4, .. })
        ));
    }

    #[tokio::test]
    async fn client_reset_fails_later_writes_and_ends_inbound() {
        let (mut session, mut client) = start();
        client.send(syn(1, "data", 0)).await;
        let mut s = session.incoming.recv().await.unwrap();
        s.accept().await.unwrap();
        let _ = client.recv().await;
        client
            .send(Frame::RstStream {
                stream: 1,
                status: RST_CANCEL,
            })
            .await;
        assert!(s.inbound.recv().await.is_none());
        assert!(s.writer.write(Bytes::from_static(b"x")).await.is_err());
    }

    #[tokio::test]
    async fn connection_end_closes_incoming() {
        let (mut session, client) = start();
        drop(client);
        assert!(session.incoming.recv().await.is_none());
    }
}
