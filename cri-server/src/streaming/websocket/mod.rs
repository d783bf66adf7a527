//! WebSocket (RFC 6455), server side, as client-go's WebSocket executor and port-forward dialer use it.
//!
//! - [`handshake`]: accept key and subprotocol choice.
//! - [`frame`]: frame codec.
//! - [`conn`]: message-level connection with ping/pong and the close handshake.
//! - [`channels`]: the Kubernetes channel protocols and SPDY tunnelling on top.

pub mod channels;
pub mod conn;
pub mod frame;
pub mod handshake;

pub use channels::ChannelWriter;
pub use conn::{WsSender, WsSession};

/// Why a WebSocket connection was given up.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    #[error("websocket protocol violation: {0}")]
    Protocol(&'static str),
    #[error("websocket message too large")]
    TooLarge,
}
