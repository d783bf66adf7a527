//! Pod networking for wasm-cri.
//!
//! Today this crate owns the pod network namespace ([`netns`]): one namespace per pod, pinned by a bind mount
//! under the runtime's state directory, with only `lo` up. CNI plugin invocation and the native netlink
//! backend (bridge, veth, TAP) come with the pod-networking issue and will live here too.

pub mod error;
pub mod netns;

pub use error::NetError;
pub use netns::NetNs;
