//! Pod networking for wasm-cri.
//!
//! - [`netns`]: one network namespace per pod, pinned by a bind mount under the runtime's state directory,
//!   with `lo` up.
//! - [`backend`]: the [`NetworkBackend`] boundary the runtime talks to, and what an attach leaves behind
//!   ([`Attachment`], kept with the pod so detach undoes exactly that).
//! - [`plugin`]: the CNI backend: config loading, plugin execution per the CNI spec, result parsing.
//! - [`fake`]: a backend for tests.
//!
//! The native netlink backend (bridge, veth, TAP) will be another [`NetworkBackend`]. No CRI types here: the
//! runtime translates its pod config into a [`PodNetwork`].

pub mod backend;
pub mod error;
pub mod fake;
pub mod netns;
pub mod plugin;

pub use backend::{
    Attachment, Bandwidth, DnsSettings, NetworkBackend, NetworkStatus, NoNetwork, PodNetwork,
    PortMapping,
};
pub use error::NetError;
pub use netns::NetNs;
pub use plugin::backend::{CniBackend, CniOptions};
