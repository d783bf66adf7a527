//! A WebSocket connection after the handshake, as message streams: the reader task reassembles client
//! messages, answers pings (client-go pings every 5 s and gives up after a minute without a pong) and the
//! close handshake; the writer task owns the socket's write half and sends what is queued, in order.

use std::io;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::debug;

use super::frame::{OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, decode, encode};
use crate::streaming::{ConnRead, ConnWrite};

/// Largest message accepted from a client (client-go sends at most 32 KiB plus a channel byte).
const MAX_MESSAGE: usize = 16 << 20;
const BACKLOG: usize = 32;
/// Close status 1000: normal closure.
const CLOSE_NORMAL: u16 = 1000;

enum Out {
    Binary(Bytes),
    Pong(Vec<u8>),
    Close(u16),
}

/// The handler's side of a connection; the client's data messages come out of the receiver [`WsSession::start`]
/// returns beside it, until the client closes or the connection breaks.
pub struct WsSession {
    pub sender: WsSender,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

/// Queues binary messages to the client. Cheap to clone.
#[derive(Clone)]
pub struct WsSender {
    tx: mpsc::Sender<Out>,
}

impl WsSession {
    /// Starts the reader and writer tasks; returns the session and the client's messages (binary or text
    /// payloads).
    pub fn start(read: ConnRead, write: ConnWrite) -> (WsSession, mpsc::Receiver<Bytes>) {
        let (tx, rx) = mpsc::channel(BACKLOG);
        let (incoming_tx, incoming) = mpsc::channel(BACKLOG);
        let reader = tokio::spawn(read_loop(read, tx.clone(), incoming_tx));
        let writer = tokio::spawn(write_loop(write, rx));
        let session = WsSession {
            sender: WsSender { tx },
            reader,
            writer,
        };
        (session, incoming)
    }

    /// Sends everything queued, then a normal-closure Close frame, closes our half, and waits up to `linger`
    /// for the client to finish its side of the close handshake.
    pub async fn close(mut self, linger: Duration) {
        // Bounded too: a client that stopped reading must not keep the session (and its task) alive.
        let (tx, writer) = (&self.sender.tx, &mut self.writer);
        let _ = tokio::time::timeout(linger, async move {
            if tx.send(Out::Close(CLOSE_NORMAL)).await.is_ok() {
                let _ = writer.await;
            }
        })
        .await;
        let _ = tokio::time::timeout(linger, &mut self.reader).await;
    }
}

impl Drop for WsSession {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

impl WsSender {
    pub async fn send(&self, data: Bytes) -> io::Result<()> {
        self.tx
            .send(Out::Binary(data))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the websocket is closed"))
    }
}

async fn read_loop(mut read: ConnRead, out: mpsc::Sender<Out>, incoming: mpsc::Sender<Bytes>) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    // A fragmented data message being reassembled.
    let mut partial: Option<Vec<u8>> = None;
    loop {
        let frame = match decode(&buf, MAX_MESSAGE) {
            Ok(Some((frame, used))) => {
                buf.advance(used);
                frame
            }
            Ok(None) => match read.read_buf(&mut buf).await {
                Ok(0) => return,
                Ok(_) => continue,
                Err(err) => {
                    debug!(error = %err, "websocket read failed");
                    return;
                }
            },
            Err(err) => {
                debug!(error = %err, "websocket protocol error; closing");
                let _ = out.send(Out::Close(1002)).await;
                return;
            }
        };
        if frame.is_control() {
            match frame.opcode {
                OP_PING => {
                    let _ = out.send(Out::Pong(frame.payload)).await;
                }
                OP_CLOSE => {
                    let code = frame
                        .payload
                        .first_chunk::<2>()
                        .map(|c| u16::from_be_bytes(*c))
                        .unwrap_or(CLOSE_NORMAL);
                    let _ = out.send(Out::Close(code)).await;
                    return;
                }
                _ => {} // OP_PONG and reserved control codes
            }
            continue;
        }
        let message = match (frame.opcode, partial.take()) {
            (OP_CONTINUATION, Some(mut so_far)) => {
                so_far.extend_from_slice(&frame.payload);
                so_far
            }
            (OP_CONTINUATION, None) => {
                debug!("websocket continuation frame without a message; closing");
                let _ = out.send(Out::Close(1002)).await;
                return;
            }
            (_, Some(_)) => {
                debug!("websocket message interleaved with a fragmented one; closing");
                let _ = out.send(Out::Close(1002)).await;
                return;
            }
            (_, None) => frame.payload,
        };
        if message.len() > MAX_MESSAGE {
            let _ = out.send(Out::Close(1009)).await;
            return;
        }
        if !frame.fin {
            partial = Some(message);
            continue;
        }
        if incoming.send(Bytes::from(message)).await.is_err() {
            // Nobody reads client data any more; keep serving pings and the close handshake.
            continue;
        }
    }
}

async fn write_loop(mut write: ConnWrite, mut rx: mpsc::Receiver<Out>) {
    let mut out = Vec::with_capacity(64 * 1024);
    while let Some(msg) = rx.recv().await {
        out.clear();
        let closing = match msg {
            Out::Binary(data) => {
                encode(OP_BINARY, &data, &mut out);
                false
            }
            Out::Pong(payload) => {
                encode(OP_PONG, &payload, &mut out);
                false
            }
            Out::Close(code) => {
                encode(OP_CLOSE, &code.to_be_bytes(), &mut out);
                true
            }
        };
        if write.write_all(&out).await.is_err() || write.flush().await.is_err() {
            return;
        }
        if closing {
            break;
        }
    }
    let _ = write.shutdown().await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::frame::{Frame, OP_TEXT, encode_masked};
    use super::*;

    /// Reads one unmasked server frame.
    async fn server_frame(io: &mut tokio::io::DuplexStream) -> Option<Frame> {
        let mut head = [0u8; 2];
        if io.read_exact(&mut head).await.is_err() {
            return None;
        }
        let len = match head[1] & 0x7f {
            126 => usize::from(io.read_u16().await.unwrap()),
            127 => io.read_u64().await.unwrap() as usize,
            n => usize::from(n),
        };
        let mut payload = vec![0; len];
        io.read_exact(&mut payload).await.unwrap();
        Some(Frame {
            fin: head[0] & 0x80 != 0,
            opcode: head[0] & 0x0f,
            payload,
        })
    }

    fn start() -> (WsSession, mpsc::Receiver<Bytes>, tokio::io::DuplexStream) {
        let (server, client) = tokio::io::duplex(1 << 16);
        let (r, w) = tokio::io::split(server);
        let (ws, incoming) = WsSession::start(Box::new(r), Box::new(w));
        (ws, incoming, client)
    }

    #[tokio::test]
    async fn messages_pings_and_close() {
        let (ws, mut incoming, mut client) = start();
        // A fragmented binary message with a ping in the middle.
        client
            .write_all(&encode_masked(OP_BINARY, false, b"\x00he", [9, 8, 7, 6]))
            .await
            .unwrap();
        client
            .write_all(&encode_masked(OP_PING, true, b"p", [1, 1, 1, 1]))
            .await
            .unwrap();
        client
            .write_all(&encode_masked(OP_CONTINUATION, true, b"llo", [5, 5, 5, 5]))
            .await
            .unwrap();
        let pong = server_frame(&mut client).await.unwrap();
        assert_eq!((pong.opcode, pong.payload), (OP_PONG, b"p".to_vec()));
        assert_eq!(
            incoming.recv().await.unwrap(),
            Bytes::from_static(b"\x00hello")
        );
        client
            .write_all(&encode_masked(OP_TEXT, true, b"t", [0; 4]))
            .await
            .unwrap();
        assert_eq!(incoming.recv().await.unwrap(), Bytes::from_static(b"t"));

        ws.sender
            .send(Bytes::from_static(b"\x01out"))
            .await
            .unwrap();
        let f = server_frame(&mut client).await.unwrap();
        assert_eq!((f.opcode, f.payload), (OP_BINARY, b"\x01out".to_vec()));

        let closing = tokio::spawn(ws.close(Duration::from_secs(5)));
        let f = server_frame(&mut client).await.unwrap();
        assert_eq!((f.opcode, f.payload), (OP_CLOSE, vec![0x03, 0xe8]));
        client
            .write_all(&encode_masked(OP_CLOSE, true, &[0x03, 0xe8], [0; 4]))
            .await
            .unwrap();
        closing.await.unwrap();
        assert!(server_frame(&mut client).await.is_none());
    }

    #[tokio::test]
    async fn client_close_is_answered_and_ends_incoming() {
        let (_ws, mut incoming, mut client) = start();
        client
            .write_all(&encode_masked(OP_CLOSE, true, &[0x03, 0xe9], [0; 4]))
            .await
            .unwrap();
        let f = server_frame(&mut client).await.unwrap();
        assert_eq!((f.opcode, f.payload), (OP_CLOSE, vec![0x03, 0xe9]));
        assert!(incoming.recv().await.is_none());
    }
}
