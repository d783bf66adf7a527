//! The wasm-cri daemon.
//!
//! - [`config`]: flags, config file and defaults.
//! - [`server`]: binds the CRI socket, recovers state, serves until a signal.
//! - [`grpc`]: the tonic edge; a switchboard that only delegates to [`runtime`].
//! - [`runtime`]: one file per CRI method, transport-agnostic.
//! - [`precompiler`]: the pod processes' engine, compiling for the image store's precompile cache.
//! - [`state`]: pod sandbox and container records and their persistence.
//! - [`supervisor`]: watches each pod process and applies its container events.
//! - [`recovery`]: rebuilds state and reconnects to pod processes after a restart.
//! - [`streaming`]: the HTTP server behind the Exec, Attach and PortForward URLs (SPDY and WebSocket).

pub mod config;
pub mod error;
pub mod grpc;
pub mod ids;
pub mod precompiler;
pub mod recovery;
pub mod runtime;
pub mod server;
pub mod state;
pub mod streaming;
pub mod supervisor;
