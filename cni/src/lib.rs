//! Pod networking for wasm-cri.
//!
//! - [`netns`]: one network namespace per pod, pinned by a bind mount under the runtime's state directory,
//!   with `lo` up.
//! - [`backend`]: the [`NetworkBackend`] boundary the runtime talks to, and what an attach leaves behind
//!   ([`Attachment`], kept with the pod so detach undoes exactly that).
//! - [`plugin`]: the CNI backend: config loading, plugin execution per the CNI spec, result parsing.
//! - [`native`]: the native backend (bridge, veth, TAP, IPAM over rtnetlink) for nodes without a CNI config,
//!   and [`CniOrNative`], the backend the daemon uses (CNI while a config exists, else native).
//! - [`fake`]: a backend for tests.
//!
//! No CRI types here: the runtime translates its pod config into a [`PodNetwork`].

pub mod backend;
pub mod error;
pub mod fake;
pub mod native;
pub mod netns;
pub mod plugin;

pub use backend::{
    Attachment, Bandwidth, DnsSettings, NetworkBackend, NetworkStatus, NoNetwork, PodNetwork,
    PortMapping,
};
pub use error::NetError;
pub use native::fallback::CniOrNative;
pub use native::{NativeAttachment, NativeBackend, NativeOptions, Subnet};
pub use netns::NetNs;
pub use plugin::backend::{CniBackend, CniOptions};
