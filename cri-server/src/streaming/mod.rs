//! The CRI streaming server: where the URLs returned by Exec, Attach and PortForward lead.
//!
//! The CRI methods validate a request and park it in the [`TokenCache`] under a one-time token; the client
//! (crictl, or the kubelet on behalf of kubectl) then connects to `http://<stream_address>/<kind>/<token>`
//! and upgrades the connection to SPDY/3.1 or WebSocket. From there the session runs against a
//! [`StreamBackend`], which the daemon implements with its pods and containers.
//!
//! - [`tokens`]: the one-time token cache.
//! - [`http`]: accepting connections, request heads, protocol negotiation, the 101 answer.
//! - [`spdy`], [`websocket`]: the two transports.
//! - [`remotecommand`]: exec and attach sessions (`channel.k8s.io` v1 to v5), [`status`] their outcome.
//! - [`portforward`]: port-forward sessions (`portforward.k8s.io`, over SPDY, SPDY-in-WebSocket, or the
//!   WebSocket channel protocol).
//! - [`pipe`]: copying between the runtime's byte pipes and a transport's streams.
//! - [`backend`]: the trait the runtime implements.

pub mod backend;
pub mod http;
pub mod pipe;
pub mod portforward;
pub mod remotecommand;
pub mod spdy;
pub mod status;
pub mod tokens;
pub mod websocket;

pub use backend::{StreamBackend, StreamIo, TermSize};
pub use http::serve;
pub use tokens::{StreamRequest, TokenCache};

/// The reading half of an upgraded connection (a TCP socket, or a byte stream tunnelled in a WebSocket).
pub type ConnRead = Box<dyn tokio::io::AsyncRead + Send + Unpin>;
/// The writing half of an upgraded connection.
pub type ConnWrite = Box<dyn tokio::io::AsyncWrite + Send + Unpin>;
