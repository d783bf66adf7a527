//! [`LogSink`]: the destination of one guest output stream.
//!
//! A sink either writes CRI log entries into a container's [`LogFile`] or captures raw bytes in memory (the seam
//! for `ExecSync`, which returns output in the response instead of logging it). Clones share state, so the
//! engine can hand one clone to WASI and keep another to [`LogSink::finish`] the stream when the instance ends.

use std::sync::{Arc, Mutex, MutexGuard};

use chrono::Utc;

use super::format::render;
use super::line::LineSplitter;
use super::{LogFile, Stream};

/// Where a container's stdout or stderr goes.
#[derive(Clone, Debug)]
pub struct LogSink {
    inner: Arc<Mutex<Target>>,
    terminal: bool,
}

#[derive(Debug)]
enum Target {
    /// CRI log entries appended to a (shared) log file.
    Cri {
        file: LogFile,
        stream: Stream,
        /// Attached clients (CRI Attach) get the raw bytes too.
        tee: Option<tokio::sync::broadcast::Sender<(Stream, bytes::Bytes)>>,
        splitter: LineSplitter,
        /// Set after a failed write so a full disk logs one warning rather than one per line.
        failing: bool,
    },
    /// Raw bytes handed to a channel as they are written (an exec's output, streamed to the daemon). The
    /// receiver is drained by the gRPC reply stream, so it holds at most what the network has not taken yet.
    Channel {
        tx: tokio::sync::mpsc::UnboundedSender<bytes::Bytes>,
    },
    /// Raw bytes kept in memory, up to `limit`; the rest is dropped.
    Memory {
        buf: Vec<u8>,
        limit: usize,
        truncated: bool,
    },
}

impl LogSink {
    /// A sink writing `stream`'s output as CRI log entries into `file`.
    pub fn new(file: LogFile, stream: Stream) -> LogSink {
        LogSink::from_target(Target::Cri {
            file,
            stream,
            tee: None,
            splitter: LineSplitter::new(),
            failing: false,
        })
    }

    /// A sink keeping up to `limit` bytes of output in memory (for `ExecSync`); read them with
    /// [`LogSink::captured`].
    pub fn memory(limit: usize) -> LogSink {
        LogSink::from_target(Target::Memory {
            buf: Vec::new(),
            limit,
            truncated: false,
        })
    }

    /// A log-file sink that also hands every write, raw, to `tee`'s subscribers (attached clients); no
    /// subscriber costs nothing.
    pub fn with_tee(
        file: LogFile,
        stream: Stream,
        tee: tokio::sync::broadcast::Sender<(Stream, bytes::Bytes)>,
    ) -> LogSink {
        LogSink::from_target(Target::Cri {
            file,
            stream,
            tee: Some(tee),
            splitter: LineSplitter::new(),
            failing: false,
        })
    }

    /// A sink passing every write on to `tx` as it happens (exec output). Writes after the receiver is gone
    /// are dropped, as output to a closed log would be.
    pub fn channel(
        tx: tokio::sync::mpsc::UnboundedSender<bytes::Bytes>,
        terminal: bool,
    ) -> LogSink {
        let mut sink = LogSink::from_target(Target::Channel { tx });
        sink.terminal = terminal;
        sink
    }

    fn from_target(target: Target) -> LogSink {
        LogSink {
            inner: Arc::new(Mutex::new(target)),
            terminal: false,
        }
    }

    /// Whether the guest is told this stream is a terminal (an exec with `tty`).
    pub fn is_terminal(&self) -> bool {
        self.terminal
    }

    /// Takes guest output. Never fails: losing log output must not fail the guest's write, as with containerd.
    pub fn write(&self, data: &[u8]) {
        match &mut *self.lock() {
            Target::Cri {
                file,
                stream,
                tee,
                splitter,
                failing,
            } => {
                if let Some(tee) = tee
                    && tee.receiver_count() > 0
                {
                    let _ = tee.send((*stream, bytes::Bytes::copy_from_slice(data)));
                }
                let now = Utc::now();
                splitter.push(data, |tag, content| {
                    append(file, render(now, *stream, tag, content), *stream, failing);
                });
            }
            Target::Channel { tx } => {
                let _ = tx.send(bytes::Bytes::copy_from_slice(data));
            }
            Target::Memory {
                buf,
                limit,
                truncated,
            } => {
                let room = limit.saturating_sub(buf.len());
                let take = room.min(data.len());
                buf.extend_from_slice(&data[..take]);
                *truncated |= take < data.len();
            }
        }
    }

    /// Ends the stream: output left without a trailing newline is written as a partial (`P`) entry. Call once
    /// the instance has ended; later writes start a new line.
    pub fn finish(&self) {
        if let Target::Cri {
            file,
            stream,
            splitter,
            failing,
            ..
        } = &mut *self.lock()
        {
            let now = Utc::now();
            splitter.finish(|tag, content| {
                append(file, render(now, *stream, tag, content), *stream, failing);
            });
        }
    }

    /// The bytes captured by a [`LogSink::memory`] sink, and whether some were dropped at the limit. A log-file
    /// sink captures nothing.
    pub fn captured(&self) -> (Vec<u8>, bool) {
        match &*self.lock() {
            Target::Memory { buf, truncated, .. } => (buf.clone(), *truncated),
            Target::Cri { .. } | Target::Channel { .. } => (Vec::new(), false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Target> {
        // The target holds plain buffers that stay consistent even if a writer panicked.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn append(file: &LogFile, line: Vec<u8>, stream: Stream, failing: &mut bool) {
    match file.write_line(&line) {
        Ok(()) => *failing = false,
        Err(error) => {
            if !*failing {
                tracing::warn!(
                    path = %file.path().display(),
                    stream = stream.as_str(),
                    %error,
                    "writing container log failed; dropping output until a write succeeds"
                );
            }
            *failing = true;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::logs::format::parse_line;

    #[test]
    fn both_streams_share_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let file = LogFile::open(&path).unwrap();
        let out = LogSink::new(file.clone(), Stream::Stdout);
        let err = LogSink::new(file, Stream::Stderr);
        out.write(b"to out\npart");
        err.write(b"to err\n");
        out.finish();
        err.finish();

        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<_> = text.lines().map(|l| parse_line(l).unwrap()).collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            (lines[0].1, lines[0].2, lines[0].3),
            ("stdout", "F", "to out")
        );
        assert_eq!(
            (lines[1].1, lines[1].2, lines[1].3),
            ("stderr", "F", "to err")
        );
        assert_eq!(
            (lines[2].1, lines[2].2, lines[2].3),
            ("stdout", "P", "part")
        );
        let ts = lines[0].0;
        assert_eq!(ts.len(), "2026-11-22T06:40:01.123456789Z".len());
        assert!(ts.ends_with('Z'));
        assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok());
    }

    #[test]
    fn memory_sink_captures_up_to_its_limit() {
        let sink = LogSink::memory(5);
        sink.write(b"abc");
        sink.write(b"defg");
        sink.finish();
        assert_eq!(sink.captured(), (b"abcde".to_vec(), true));
    }

    #[test]
    fn channel_sink_passes_writes_on_as_they_happen() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let sink = LogSink::channel(tx, true);
        sink.write(b"no newline");
        assert_eq!(rx.try_recv().unwrap(), &b"no newline"[..]);
        assert!(sink.is_terminal());
        drop(rx);
        sink.write(b"receiver gone: dropped, not a panic");
    }
}
