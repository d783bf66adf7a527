//! SPDY/3.1, the multiplexing protocol client-go, crictl and the kubelet speak after an HTTP upgrade
//! (`Upgrade: SPDY/3.1`) or inside a WebSocket (`SPDY/3.1+portforward.k8s.io`).
//!
//! - [`frame`]: frame parsing and serialisation.
//! - [`headers`]: header blocks and their zlib compression with the SPDY dictionary ([`dictionary`]).
//! - [`session`]: the server side of a connection: streams, DATA routing, FIN/RST, ping echo, GOAWAY.

pub mod dictionary;
pub mod frame;
pub mod headers;
pub mod session;

pub use headers::Headers;
pub use session::{IncomingStream, Session, StreamWriter};

/// Why a SPDY connection was given up.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("unsupported SPDY version {0} (only 3 is spoken)")]
    Version(u16),
    #[error("malformed {frame} frame")]
    Malformed { frame: &'static str },
    #[error("bad header block: {0}")]
    HeaderBlock(&'static str),
}
