//! The crate's one error type. Each variant names the operation that failed and keeps the cause in
//! `#[source]` rather than repeating it in the message.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use crate::registry::{FailureKind, RegistryError, failure_kind};

/// Everything that can go wrong while pulling, storing, looking up or removing images.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },

    #[error("invalid digest {digest:?}: expected sha256:<64 lowercase hex digits>")]
    InvalidDigest { digest: String },

    #[error("unsupported digest algorithm in {digest:?}: only sha256 is supported")]
    UnsupportedDigest { digest: String },

    #[error("invalid registry credentials: {reason}")]
    InvalidAuth { reason: &'static str },

    #[error("invalid registry endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        endpoint: String,
        reason: &'static str,
    },

    #[error("image store {} is in use by another process", path.display())]
    StoreLocked {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },

    #[error("failed to {op} {}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("failed to connect to registry {registry}")]
    Connect {
        registry: String,
        #[source]
        source: RegistryError,
    },

    #[error("failed to fetch manifest {reference}")]
    FetchManifest {
        reference: String,
        #[source]
        source: RegistryError,
    },

    #[error("failed to fetch blob {digest} of {reference}")]
    FetchBlob {
        reference: String,
        digest: String,
        #[source]
        source: RegistryError,
    },

    #[error("content digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: String, actual: String },

    #[error("size mismatch for blob {digest}: descriptor says {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },

    #[error("{what} {digest} is {size} bytes, more than the {limit} bytes allowed")]
    TooLarge {
        what: &'static str,
        digest: String,
        size: u64,
        limit: u64,
    },

    #[error("failed to parse manifest {digest}")]
    ParseManifest {
        digest: String,
        #[source]
        source: serde_json::Error,
    },

    #[error("unsupported manifest media type {media_type:?} (manifest {digest})")]
    UnsupportedManifest { digest: String, media_type: String },

    #[error(
        "no image in index {digest} for a wasi/wasm or linux/amd64 platform (available: {available})"
    )]
    NoMatchingPlatform { digest: String, available: String },

    #[error("failed to parse image config {digest}")]
    ParseConfig {
        digest: String,
        #[source]
        source: serde_json::Error,
    },

    #[error("unsupported image config media type {media_type:?}")]
    UnsupportedConfig { media_type: String },

    #[error(
        "unsupported layer media type {media_type:?} (this image's layers: {found}; supported: tar, tar+gzip and raw Wasm layers)"
    )]
    UnsupportedLayer { media_type: String, found: String },

    #[error("layer {layer} has the Wasm media type {media_type:?} but is not a Wasm binary")]
    NotWasm { layer: String, media_type: String },

    #[error("image {reference} has no layers")]
    NoLayers { reference: String },

    #[error("failed to read layer {layer}")]
    ReadLayer {
        layer: String,
        #[source]
        source: io::Error,
    },

    #[error("refusing entry {path:?} of layer {layer}: {reason}")]
    UnsafeLayerEntry {
        layer: String,
        path: String,
        reason: &'static str,
    },

    #[error("failed to unpack entry {path:?} of layer {layer}")]
    UnpackEntry {
        layer: String,
        path: String,
        #[source]
        source: io::Error,
    },

    #[error(
        "uncompressed layer {layer} does not match its diff id: expected {expected}, got {actual}"
    )]
    DiffIdMismatch {
        layer: String,
        expected: String,
        actual: String,
    },

    #[error("failed to parse image record {}", path.display())]
    ParseRecord {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("image record {} has version {version}, this build reads version 1", path.display())]
    UnsupportedRecordVersion { path: PathBuf, version: u64 },

    #[error("failed to encode image record {id}")]
    EncodeRecord {
        id: String,
        #[source]
        source: serde_json::Error,
    },

    #[error("background task to {op} did not finish")]
    Task {
        op: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },

    #[error("pull cancelled while {op}")]
    Cancelled { op: &'static str },

    #[error("{} is not a usable OCI image layout: {reason}", layout.display())]
    InvalidLayout { layout: PathBuf, reason: String },

    #[error("failed to parse {file} of OCI image layout {}", layout.display())]
    ParseLayout {
        layout: PathBuf,
        file: &'static str,
        #[source]
        source: serde_json::Error,
    },

    #[error("OCI image layout {} has no {file}", layout.display())]
    MissingFromLayout { layout: PathBuf, file: String },

    #[error(
        "manifest {digest} in OCI image layout {} has no image name ({detail}); pass --name <registry/repository:tag>",
        layout.display()
    )]
    UnnamedLayoutEntry {
        layout: PathBuf,
        digest: String,
        detail: String,
    },

    #[error(
        "--name names one image, but OCI image layout {} holds {count} ({digests}); import it without --name (its annotations name the images) or one image at a time",
        layout.display()
    )]
    NameNeedsOneImage {
        layout: PathBuf,
        count: usize,
        digests: String,
    },

    #[error("no manifest of image {id} is in the store; pull the image again to export it")]
    NoManifestForImage { id: String },

    #[error(
        "no image {lookup:?} in the store (look it up by id, repo tag or repo digest: crictl images)"
    )]
    ImageNotFound { lookup: String },

    #[error(
        "stored blob {digest} is corrupt (its content hashes to {actual}); remove the image and pull it again"
    )]
    CorruptBlob { digest: String, actual: String },

    #[error("cannot export to {}: {reason}", path.display())]
    ExportTarget { path: PathBuf, reason: &'static str },

    #[error("precompiler key {key:?} is not 1 to 64 lowercase hex digits")]
    InvalidPrecompilerKey { key: String },

    #[error("failed to precompile Wasm {digest}")]
    Precompile {
        digest: String,
        #[source]
        source: crate::precompile::PrecompileError,
    },

    /// The outcome of a pull of the same reference that this caller waited for instead of pulling
    /// again: the same message and causes as the caller who ran it got.
    #[error(transparent)]
    Shared(Arc<ImageError>),
}

/// What kind of failure an [`ImageError`] is, for callers that map errors to status codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request itself is malformed (reference, credentials).
    InvalidArgument,
    /// No such image (unknown tag or repository, no image for our platform).
    NotFound,
    /// The registry wants credentials, or refused the ones given.
    Unauthenticated,
    /// The registry knows who we are and refuses anyway.
    PermissionDenied,
    /// No registry endpoint could be reached.
    Unavailable,
    Other,
}

impl ImageError {
    /// Classifies the error, looking through shared pulls and registry failures.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ImageError::Shared(inner) => inner.kind(),
            ImageError::InvalidReference { .. } | ImageError::InvalidAuth { .. } => {
                ErrorKind::InvalidArgument
            }
            ImageError::NoMatchingPlatform { .. } | ImageError::ImageNotFound { .. } => {
                ErrorKind::NotFound
            }
            ImageError::Connect { source, .. }
            | ImageError::FetchManifest { source, .. }
            | ImageError::FetchBlob { source, .. } => match failure_kind(source.as_ref()) {
                Some(FailureKind::Unauthorized) => ErrorKind::Unauthenticated,
                Some(FailureKind::Denied) => ErrorKind::PermissionDenied,
                Some(FailureKind::NotFound) => ErrorKind::NotFound,
                Some(FailureKind::Unreachable) => ErrorKind::Unavailable,
                Some(FailureKind::Other) | None => ErrorKind::Other,
            },
            _ => ErrorKind::Other,
        }
    }

    /// Adapter for `map_err`: an [`ImageError::Io`] naming the operation and path.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| ImageError::Io { op, path, source }
    }
}
