//! wasmtime-wasi's stdout/stderr traits for [`LogSink`].
//!
//! WASI p1 `fd_write` and p2 `output-stream.write` both end in [`OutputStream::write`], which hands the bytes to
//! the sink synchronously: no pipe, no reader task, no thread per container. The log write itself is a small
//! append to a local file, so doing it on the calling (tokio worker) thread is cheaper than a hop to the
//! blocking pool; containerd's shim does the same kind of synchronous write.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use super::LogSink;

/// How much a guest may write per `check-write` permit. Bounds the host-side copy per call (wasmtime-wasi uses
/// the same 64 KiB for its own streams).
const WRITE_PERMIT: usize = 64 * 1024;

impl IsTerminal for LogSink {
    fn is_terminal(&self) -> bool {
        // Only an exec with `tty: true` gets a terminal; container logs never are one.
        LogSink::is_terminal(self)
    }
}

impl StdoutStream for LogSink {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(SinkStream(self.clone()))
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(SinkStream(self.clone()))
    }
}

/// One guest handle on a sink; every handle of a stream shares the same [`LogSink`] state.
struct SinkStream(LogSink);

impl OutputStream for SinkStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.0.write(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        // Complete entries are already written; a partial line stays buffered until its newline or the end of
        // the stream, so that one guest line becomes one log entry.
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for SinkStream {
    async fn ready(&mut self) {
        // Writes complete synchronously, so the stream is always ready.
    }
}

impl AsyncWrite for SinkStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0.write(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
