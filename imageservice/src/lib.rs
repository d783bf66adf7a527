//! Image side of wasm-cri: image references, the registry client, the content-addressed store and
//! the image records behind CRI `PullImage`, `ListImages`, `ImageStatus`, `RemoveImage` and
//! `ImageFsInfo`. It knows nothing of CRI messages or wasmtime: the daemon maps plain types.
//!
//! # Store layout
//! ```text
//! <root>/
//!   store.lock                  flock held by the one ImageStore that owns this root
//!   blobs/sha256/<hex>          manifests, indexes, configs and layers, named by their sha256;
//!                               a file only appears here after its digest and size were verified
//!   rootfs/<config-hex>/        the image's layers unpacked in order; READ-ONLY and shared by all
//!                               containers of the image, which copy or overlay it
//!   records/<config-hex>.json   {"version":1,"image":{..},"blobs":[..]}: one per image, written
//!                               temp + fsync + rename + fsync dir
//!   tmp/                        blob downloads (`blob-*`), unpacks (`rootfs-*`) and record temp
//!                               files; emptied when the store is opened
//! ```
//! The image id is the config digest (`sha256:<hex>`), as in containerd and Docker.
//!
//! # Invariants
//! - Blobs are downloaded into `tmp/`, hashed while streaming, and renamed into `blobs/` only when
//!   digest and size match the descriptor, so a present blob is trusted and never fetched again.
//! - A record is written only after its blobs and rootfs exist; on open, blobs and rootfs dirs no
//!   record refers to (left by a crash or an interrupted remove) are deleted.
//! - Pulls of the same normalised reference are serialised; blobs and rootfs dirs a pull is using
//!   are pinned so a concurrent `remove` of another image sharing them leaves them alone.
//!
//! # Extension points (later issues)
//! Layer media types are classified in `manifest.rs` (raw Wasm layers go there),
//! the network sits behind [`Registry`] (mirrors wrap it), and blob liveness is the union of the
//! records' `blobs` sets (GC and a precompile cache keyed by layer digest can build on it).

mod blob;
mod digest;
mod error;
mod fsutil;
mod layout;
mod locks;
mod manifest;
mod pins;
mod platform;
mod pull;
mod record;
pub mod reference;
pub mod registry;
mod safe_path;
mod store;
mod types;
mod unpack;

#[cfg(test)]
mod store_tests;

pub use error::ImageError;
pub use reference::ImageRef;
pub use registry::{OciRegistry, Registry, RegistryError, RegistrySession};
pub use store::ImageStore;
pub use types::{FsUsage, Image, ImageConfig, RegistryAuth, StoreOptions};
