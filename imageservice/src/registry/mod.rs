//! The network boundary. [`Registry`] opens a [`RegistrySession`] per pull with that pull's
//! credentials (so tokens never leak from one pull's credentials to another's), and the session
//! fetches raw manifests and streams blobs. Verification, platform choice and storage stay on our
//! side, so the real client and the test fake only move bytes.
//!
//! Two layers: a [`Transport`] talks to exactly one [`Endpoint`] (the real one is
//! [`OciRegistry`]), and [`MirroredRegistry`] (the [`Registry`] the store uses) decides which
//! endpoints a reference is pulled from (configured mirrors in order, then the origin) and falls
//! from one to the next when an endpoint fails.

mod endpoint;
mod mirror;
mod oci;

#[cfg(test)]
pub(crate) mod fake;

use std::fmt;

use futures::future::BoxFuture;
use tokio::io::AsyncWrite;

pub use endpoint::Endpoint;
pub use mirror::MirroredRegistry;
pub use oci::OciRegistry;

use crate::reference::ImageRef;
use crate::types::RegistryAuth;

/// Whatever the transport reports; kept as the `#[source]` of the [`ImageError`](crate::ImageError)
/// variant that names the failed operation. Transports wrap what they can classify in [`Failure`].
pub type RegistryError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Opens sessions for pulls. The store holds one.
pub trait Registry: Send + Sync {
    /// Prepares to pull `reference` with `auth` (the pull's own credentials; `None` means the
    /// configured ones for the host, else anonymous). Does no network I/O.
    fn connect(
        &self,
        reference: &ImageRef,
        auth: Option<&RegistryAuth>,
    ) -> Result<Box<dyn RegistrySession>, RegistryError>;
}

/// Talks to one endpoint: the real HTTP client, or the fake in tests.
pub trait Transport: Send + Sync {
    /// Prepares a session with `endpoint` using `auth` (anonymous when `None`). Does no network I/O.
    fn open(
        &self,
        endpoint: &Endpoint,
        auth: Option<&RegistryAuth>,
    ) -> Result<Box<dyn RegistrySession>, RegistryError>;
}

/// One pull's conversation with a registry. References are always the requested ones; a session
/// bound to a mirror maps them to the mirror's repository itself.
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

/// What kind of refusal a registry answered with, for status codes and for choosing the next
/// endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// 401: no credentials, or the registry did not accept them.
    Unauthorized,
    /// 403: authenticated but not allowed.
    Denied,
    /// 404 / `MANIFEST_UNKNOWN` / `NAME_UNKNOWN` / `BLOB_UNKNOWN`.
    NotFound,
    /// Could not connect, or no answer in time.
    Unreachable,
    /// Anything else (5xx, protocol errors).
    Other,
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailureKind::Unauthorized => "authentication required or credentials rejected",
            FailureKind::Denied => "access denied",
            FailureKind::NotFound => "not found",
            FailureKind::Unreachable => "registry unreachable",
            FailureKind::Other => "registry error",
        })
    }
}

/// A transport error with its classification; the transport's own error is the source.
#[derive(Debug, thiserror::Error)]
#[error("{kind}")]
pub struct Failure {
    pub kind: FailureKind,
    #[source]
    pub source: RegistryError,
}

/// Every endpoint tried for one request failed. Each endpoint's error is in the message, since an
/// error can have only one `source`; the decisive one (the last tried, usually the origin) is also
/// kept as the source so callers can classify it.
#[derive(Debug)]
pub struct AllEndpointsFailed {
    pub attempts: Vec<(String, RegistryError)>,
}

impl fmt::Display for AllEndpointsFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "every endpoint failed:")?;
        for (i, (endpoint, error)) in self.attempts.iter().enumerate() {
            let sep = if i == 0 { " " } else { "; " };
            write!(f, "{sep}{endpoint}: {}", error_chain(error.as_ref()))?;
        }
        Ok(())
    }
}

// No `source()`: every cause, the last one included, is already in the message above; callers
// that classify use `decisive()`.
impl std::error::Error for AllEndpointsFailed {}

impl AllEndpointsFailed {
    /// The error that decides how the request failed: the last endpoint's.
    pub fn decisive(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.attempts
            .last()
            .map(|(_, e)| e.as_ref() as &(dyn std::error::Error + 'static))
    }
}

/// The classification of a registry error, looking through wrappers; `None` when unknown.
pub(crate) fn failure_kind(error: &(dyn std::error::Error + 'static)) -> Option<FailureKind> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(failure) = e.downcast_ref::<Failure>() {
            return Some(failure.kind);
        }
        if let Some(all) = e.downcast_ref::<AllEndpointsFailed>() {
            return all.decisive().and_then(failure_kind);
        }
        current = e.source();
    }
    None
}

/// `error: cause: cause`, for messages and log fields that must carry a whole chain.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
