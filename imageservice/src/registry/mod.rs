//! The network boundary. [`Registry`] opens a [`RegistrySession`] per pull with that pull's
//! credentials (so tokens never leak from one pull's credentials to another's), and the session
//! fetches raw manifests and streams blobs. Verification, platform choice and storage stay on our
//! side, so the real client ([`OciRegistry`]) and the test fake only move bytes. Mirrors can be
//! added later as a `Registry` that tries several sessions.

mod oci;

#[cfg(test)]
pub(crate) mod fake;

use futures::future::BoxFuture;
use tokio::io::AsyncWrite;

pub use oci::OciRegistry;

use crate::reference::ImageRef;
use crate::types::RegistryAuth;

/// Whatever the transport reports; kept as the `#[source]` of the [`ImageError`](crate::ImageError)
/// variant that names the failed operation.
pub type RegistryError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Opens sessions against registries.
pub trait Registry: Send + Sync {
    /// Prepares to pull `reference` with `auth` (anonymous when `None`). Does no network I/O.
    fn connect(
        &self,
        reference: &ImageRef,
        auth: Option<&RegistryAuth>,
    ) -> Result<Box<dyn RegistrySession>, RegistryError>;
}

/// One pull's conversation with a registry.
pub trait RegistrySession: Send + Sync {
    /// The raw manifest or index `reference` names (by digest when it has one, else by tag).
    /// The caller verifies the bytes.
    fn manifest<'a>(
        &'a self,
        reference: &'a ImageRef,
    ) -> BoxFuture<'a, Result<Vec<u8>, RegistryError>>;

    /// Streams blob `digest` of `reference`'s repository into `out`. The caller verifies what
    /// arrives; an implementation may stop early on a mismatch it detects itself.
    fn blob<'a>(
        &'a self,
        reference: &'a ImageRef,
        digest: &'a str,
        out: &'a mut (dyn AsyncWrite + Unpin + Send),
    ) -> BoxFuture<'a, Result<(), RegistryError>>;
}
