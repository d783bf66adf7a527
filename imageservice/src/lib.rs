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
//!   precompiled/                0700: the precompile cache (`precompile.rs`), derived from the rootfs
//!     images/<config-hex>.json  the image's Wasm files (path, sha256 of the file's bytes, size)
//!     <key>/<wasm-hex>.cwasm    0600 native code of one Wasm file; <key> names the compiler and its
//!                               settings (the daemon's engine), <wasm-hex> the Wasm's sha256
//! ```
//! The image id is the config digest (`sha256:<hex>`), as in containerd and Docker.
//!
//! # Invariants
//! - Blobs are downloaded into `tmp/`, hashed while streaming, and renamed into `blobs/` only when
//!   digest and size match the descriptor, so a present blob is trusted and never fetched again.
//! - A record is written only after its blobs and rootfs exist; on open, blobs and rootfs dirs no
//!   record refers to (left by a crash or an interrupted remove) are deleted.
//! - Concurrent pulls of the same normalised reference and credentials share one download
//!   (`inflight.rs`); blobs and rootfs dirs a pull is using are pinned so a concurrent `remove` of
//!   another image sharing them leaves them alone.
//! - A cancelled pull (its future dropped) or a failed one writes no record; verified blobs it
//!   already stored stay for a retry and are swept at the next open if no record takes them.
//!
//! # Formats and registries
//! Layer media types are classified in `manifest.rs`: tar(+gzip) layers are unpacked, raw Wasm
//! layers (runwasi, the CNCF Wasm OCI artifact, wasm-to-oci) become files (`pull.rs` says where).
//! The network sits behind [`Registry`]: [`MirroredRegistry`] tries the configured mirrors, then
//! the origin, over a [`Transport`] ([`OciRegistry`], or the fake in tests). `import` serves an OCI
//! image layout to the same pull as a [`RegistrySession`] (`oci_layout.rs`); [`export_image`]
//! writes one from the store.
//!
//! # Precompile cache
//! The store keeps native code compiled from its images' Wasm, but compiles nothing itself: a
//! [`Precompiler`] (the daemon's adapter around the pod processes' wasmtime configuration) does, so
//! this crate stays free of wasmtime. Artifacts are keyed by the Wasm's digest (for a raw Wasm layer
//! that is the layer digest; for a `.wasm` inside a tar layer, the digest of the file's bytes) and
//! the precompiler's key; artifacts of another key are deleted when the precompiler is set, an
//! image's artifacts go with the last image that lists their digest, and indexes and artifacts no
//! image accounts for are swept at open. `ImageFsInfo` counts them (they are under the root).
//!
//! # Garbage collection
//! Blob liveness is the union of the records' `blobs` sets plus the pins of running pulls: a remove
//! deletes the blobs no other record or pull holds, and opening the store sweeps whatever no record
//! refers to. Containers run on copies of an image's files, so removing an image they use is safe.

mod blob;
mod digest;
mod error;
mod export;
mod fsutil;
mod import;
mod inflight;
mod layout;
mod locks;
mod manifest;
mod oci_layout;
mod pins;
mod platform;
mod precompile;
mod pull;
mod record;
pub mod reference;
pub mod registry;
mod safe_path;
mod store;
mod types;
mod unpack;
mod wasm_index;

#[cfg(test)]
mod formats_tests;
#[cfg(test)]
mod layout_tests;
#[cfg(test)]
mod mirror_tests;
#[cfg(test)]
mod precompile_tests;
#[cfg(test)]
mod store_tests;

pub use error::{ErrorKind, ImageError};
pub use export::{Exported, export_image};
pub use precompile::{Artifact, PrecompileError, Precompiler};
pub use reference::ImageRef;
pub use registry::{
    Endpoint, FailureKind, MirroredRegistry, OciRegistry, Registry, RegistryError, RegistrySession,
    Transport,
};
pub use store::ImageStore;
pub use types::{FsUsage, Image, ImageConfig, RegistryAuth, RegistryHost, StoreOptions};
