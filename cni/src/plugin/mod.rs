//! The CNI backend: network configs (`conf`), running one plugin (`invoke`), running a plugin list
//! (`chain`), ADD results (`result`), and the [`NetworkBackend`](crate::NetworkBackend) built from them
//! (`backend`).

pub mod backend;
pub mod chain;
pub mod conf;
pub mod invoke;
pub mod result;
