//! What Kubernetes puts inside WebSocket messages.
//!
//! - The channel protocols (`channel.k8s.io`, `v4.channel.k8s.io`, `v5.channel.k8s.io`): every binary message
//!   starts with a channel number (exec/attach: 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize; port-forward
//!   v4: 2n data and 2n+1 error of the n-th port). v5 adds `[255, n]` from the client: channel n is closed
//!   (stdin's end of file).
//! - SPDY tunnelling (`SPDY/3.1+portforward.k8s.io`, client-go's port-forward dialer): the binary messages
//!   are just the pieces of a SPDY byte stream; [`tunnel`] turns them back into one.

use std::io;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::debug;

use super::conn::{WsSender, WsSession};
use crate::streaming::{ConnRead, ConnWrite};

/// v5's "this channel is closed" marker, sent as the first byte of a two-byte message.
pub const CLOSE_SIGNAL: u8 = 255;

/// Sends one channel's data to the client.
#[derive(Clone)]
pub struct ChannelWriter {
    channel: u8,
    sender: WsSender,
}

impl ChannelWriter {
    pub fn new(channel: u8, sender: WsSender) -> ChannelWriter {
        ChannelWriter { channel, sender }
    }

    /// Sends `data` as one message. Empty data sends the bare channel byte, which the kubelet uses to tell
    /// the client the connection is ready.
    pub async fn write(&self, data: Bytes) -> io::Result<()> {
        let mut m = BytesMut::with_capacity(data.len() + 1);
        m.put_u8(self.channel);
        m.extend_from_slice(&data);
        self.sender.send(m.freeze()).await
    }
}

/// Routes client messages to channels until the client is gone: `routes[n]` receives channel n's data (the
/// channel byte removed); data for a channel without a route is dropped, as the kubelet does. With
/// `stream_close` (v5), `[255, n]` drops route n, which its reader sees as end of file.
pub async fn demux(
    mut incoming: mpsc::Receiver<Bytes>,
    mut routes: Vec<Option<mpsc::Sender<Bytes>>>,
    stream_close: bool,
) {
    while let Some(message) = incoming.recv().await {
        let Some((&channel, data)) = message.split_first() else {
            continue;
        };
        if stream_close && channel == CLOSE_SIGNAL {
            match data {
                [n] => {
                    if let Some(route) = routes.get_mut(usize::from(*n)) {
                        *route = None;
                    }
                }
                _ => {
                    debug!(
                        "malformed websocket stream-close signal; ignoring the connection's input"
                    );
                    return;
                }
            }
            continue;
        }
        let Some(slot) = routes.get_mut(usize::from(channel)) else {
            continue;
        };
        if let Some(route) = slot
            && route.send(message.slice(1..)).await.is_err()
        {
            *slot = None;
        }
    }
}

/// Turns a WebSocket carrying a tunnelled byte stream into a plain connection. The returned halves behave
/// like a socket: reading ends when the client closes, shutting down the write half closes the WebSocket.
pub fn tunnel(session: WsSession, mut incoming: mpsc::Receiver<Bytes>) -> (ConnRead, ConnWrite) {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let (mut our_read, mut our_write) = tokio::io::split(ours);
    tokio::spawn(async move {
        while let Some(piece) = incoming.recv().await {
            if our_write.write_all(&piece).await.is_err() {
                break;
            }
        }
        let _ = our_write.shutdown().await;
    });
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match our_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if session
                        .sender
                        .send(Bytes::copy_from_slice(&buf[..n]))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        session.close(Duration::from_secs(5)).await;
    });
    let (r, w) = tokio::io::split(theirs);
    (Box::new(r), Box::new(w))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn demux_routes_by_channel_and_honours_v5_close() {
        let (tx, rx) = mpsc::channel(8);
        let (stdin_tx, mut stdin) = mpsc::channel(8);
        let (resize_tx, mut resize) = mpsc::channel(8);
        let routes = vec![Some(stdin_tx), None, None, None, Some(resize_tx)];
        let task = tokio::spawn(demux(rx, routes, true));
        tx.send(Bytes::from_static(b"\x00abc")).await.unwrap();
        tx.send(Bytes::from_static(b"\x02ignored")).await.unwrap();
        tx.send(Bytes::from_static(b"\x09unknown channel"))
            .await
            .unwrap();
        tx.send(Bytes::from_static(b"")).await.unwrap();
        tx.send(Bytes::from_static(b"\x04{}")).await.unwrap();
        tx.send(Bytes::from_static(&[CLOSE_SIGNAL, 0]))
            .await
            .unwrap();
        assert_eq!(stdin.recv().await.unwrap(), Bytes::from_static(b"abc"));
        assert_eq!(resize.recv().await.unwrap(), Bytes::from_static(b"{}"));
        assert!(stdin.recv().await.is_none(), "v5 close ends stdin");
        drop(tx);
        task.await.unwrap();
        assert!(resize.recv().await.is_none());
    }

    #[tokio::test]
    async fn before_v5_255_is_just_a_channel_number() {
        let (tx, rx) = mpsc::channel(8);
        let (stdin_tx, mut stdin) = mpsc::channel(8);
        tokio::spawn(demux(rx, vec![Some(stdin_tx)], false));
        tx.send(Bytes::from_static(&[CLOSE_SIGNAL, 0]))
            .await
            .unwrap();
        tx.send(Bytes::from_static(b"\x00still open"))
            .await
            .unwrap();
        assert_eq!(
            stdin.recv().await.unwrap(),
            Bytes::from_static(b"still open")
        );
    }
}
