//! CRI container logs: the file format the kubelet reads and the sinks guest output is written into.
//!
//! Each line of a CRI log file is `<timestamp> <stream> <tag> <content>\n` (see [`format`]): the timestamp is
//! RFC 3339 UTC with nine fractional digits, the stream `stdout` or `stderr`, the tag `F` for a full line or `P`
//! for a partial chunk. Both streams of a container append to the same [`LogFile`].
//!
//! - [`file`]: the shared, reopenable log file ([`LogFile`]).
//! - [`line`]: splitting a byte stream into full lines and bounded partial chunks.
//! - [`format`]: rendering one CRI log line.
//! - [`sink`]: [`LogSink`], what a container's stdout or stderr writes into.
//! - `wasi_stream`: the wasmtime-wasi stream traits for [`LogSink`], so guest writes land in the splitter
//!   without a thread or pipe per container.

pub mod file;
pub mod format;
pub mod line;
pub mod sink;
mod wasi_stream;

pub use file::LogFile;
pub use sink::LogSink;

/// Which standard stream a chunk of output came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    /// The stream's name in a CRI log line.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}
