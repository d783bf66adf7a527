//! Moving bytes between the runtime's readers/writers and a transport's logical streams, whichever transport
//! (a SPDY stream or a WebSocket channel) carries them.

use std::io;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::backend::TermSize;
use super::spdy::StreamWriter;
use super::websocket::ChannelWriter;

/// Largest piece sent at once: client-go reads WebSocket messages into 32 KiB buffers.
const CHUNK: usize = 32 * 1024;

/// One logical stream towards the client.
#[derive(Clone)]
pub enum Outbound {
    Spdy(StreamWriter),
    Ws(ChannelWriter),
}

impl Outbound {
    pub async fn write(&self, data: Bytes) -> io::Result<()> {
        match self {
            Outbound::Spdy(w) => w.write(data).await,
            Outbound::Ws(w) => w.write(data).await,
        }
    }

    /// Ends the stream: FIN on SPDY. WebSocket channels have no end of their own (the kubelet never sends
    /// v5's close signal; client-go would log it as an unknown stream): they end with the connection.
    pub async fn finish(&self) {
        if let Outbound::Spdy(w) = self {
            w.finish().await;
        }
    }
}

/// Copies `src` to the client until end of file, then ends the stream. Returns the bytes copied.
pub async fn pump_out<R: AsyncRead + Unpin>(mut src: R, out: &Outbound) -> u64 {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        match src.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if out.write(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                    break;
                }
                total += n as u64;
            }
        }
    }
    out.finish().await;
    total
}

/// Copies the client's data into `dst` until the client ends the stream, then shuts `dst` down (the reader
/// on the other side sees end of file).
pub async fn pump_in<W: AsyncWrite + Unpin>(mut rx: mpsc::Receiver<Bytes>, mut dst: W) {
    while let Some(data) = rx.recv().await {
        if dst.write_all(&data).await.is_err() {
            return;
        }
    }
    let _ = dst.shutdown().await;
}

/// Decodes the resize stream (a sequence of JSON objects, newline-separated by client-go's encoder but
/// possibly split anywhere by the transport) and forwards each size. Stops at the first undecodable value,
/// like the kubelet.
pub async fn forward_resizes(mut rx: mpsc::Receiver<Bytes>, sizes: mpsc::Sender<TermSize>) {
    let mut pending: Vec<u8> = Vec::new();
    while let Some(data) = rx.recv().await {
        pending.extend_from_slice(&data);
        let mut values = serde_json::Deserializer::from_slice(&pending).into_iter::<TermSize>();
        let mut consumed = 0;
        loop {
            match values.next() {
                Some(Ok(size)) => {
                    consumed = values.byte_offset();
                    if sizes.send(size).await.is_err() {
                        return;
                    }
                }
                Some(Err(err)) if err.is_eof() => break,
                Some(Err(_)) => return,
                None => {
                    consumed = values.byte_offset();
                    break;
                }
            }
        }
        pending.drain(..consumed);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resizes_split_anywhere_are_decoded() {
        let (tx, rx) = mpsc::channel(8);
        let (sizes_tx, mut sizes) = mpsc::channel(8);
        tokio::spawn(forward_resizes(rx, sizes_tx));
        tx.send(Bytes::from_static(b"{\"Width\":80,\"Hei"))
            .await
            .unwrap();
        tx.send(Bytes::from_static(
            b"ght\":24}\n{\"Width\":100,\"Height\":40}\n",
        ))
        .await
        .unwrap();
        assert_eq!(
            sizes.recv().await.unwrap(),
            TermSize {
                width: 80,
                height: 24
            }
        );
        assert_eq!(
            sizes.recv().await.unwrap(),
            TermSize {
                width: 100,
                height: 40
            }
        );
        tx.send(Bytes::from_static(b"garbage")).await.unwrap();
        assert!(sizes.recv().await.is_none());
    }

    #[tokio::test]
    async fn pump_in_shuts_the_writer_down_at_the_end() {
        let (tx, rx) = mpsc::channel(8);
        let (a, mut b) = tokio::io::duplex(1024);
        let task = tokio::spawn(pump_in(rx, a));
        tx.send(Bytes::from_static(b"abc")).await.unwrap();
        drop(tx);
        task.await.unwrap();
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"abc");
    }
}
