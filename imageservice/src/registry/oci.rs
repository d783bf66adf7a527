//! The real [`Transport`]: oci-client over HTTPS or plain HTTP, as the [`Endpoint`] says. One
//! oci-client `Client` per session, because the client keeps the first credentials it sees per
//! registry and caches tokens per repository. A session bound to a mirror asks the mirror for the
//! prefixed repository and sends the origin registry as `?ns=` (containerd's convention, which
//! pull-through caches serving several upstreams use; others ignore it).

use std::time::Duration;

use futures::future::BoxFuture;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth as OciAuth;
use tokio::io::AsyncWrite;

use super::{Endpoint, Failure, FailureKind, RegistryError, RegistrySession, Transport};
use crate::manifest::ACCEPTED_MANIFESTS;
use crate::reference::ImageRef;
use crate::types::RegistryAuth;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest silence while reading a response; a stalled registry fails the pull instead of
/// hanging it until the kubelet gives up.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Clone, Debug, Default)]
pub struct OciRegistry;

impl OciRegistry {
    pub fn new() -> Self {
        OciRegistry
    }
}

#[derive(Debug, thiserror::Error)]
#[error("no rustls crypto provider is installed (the daemon installs ring at startup)")]
struct NoCryptoProvider;

impl Transport for OciRegistry {
    fn open(
        &self,
        endpoint: &Endpoint,
        auth: Option<&RegistryAuth>,
    ) -> Result<Box<dyn RegistrySession>, RegistryError> {
        // reqwest panics while building its TLS config when no provider is installed.
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            return Err(Box::new(NoCryptoProvider));
        }
        let config = ClientConfig {
            protocol: if endpoint.plain_http() {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            // Index resolution happens on our side (crate::platform), with the raw index.
            platform_resolver: None,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            ..ClientConfig::default()
        };
        let client = oci_client::Client::try_from(config)?;
        let auth = match auth {
            Some(RegistryAuth::Basic { username, password }) => {
                OciAuth::Basic(username.clone(), password.clone())
            }
            Some(RegistryAuth::Bearer { token }) => OciAuth::Bearer(token.clone()),
            None => OciAuth::Anonymous,
        };
        Ok(Box::new(OciSession {
            client,
            auth,
            endpoint: endpoint.clone(),
        }))
    }
}

struct OciSession {
    client: oci_client::Client,
    auth: OciAuth,
    endpoint: Endpoint,
}

impl OciSession {
    /// `reference` as this endpoint serves it.
    fn target(&self, reference: &ImageRef) -> oci_client::Reference {
        if !self.endpoint.is_mirror_of(reference.registry()) {
            return reference.to_oci();
        }
        let mut target = reference
            .with_repository(&self.endpoint.repository(reference.repository()))
            .to_oci();
        target.set_mirror_registry(self.endpoint.host().to_owned());
        target
    }
}

impl RegistrySession for OciSession {
    fn manifest<'a>(
        &'a self,
        reference: &'a ImageRef,
    ) -> BoxFuture<'a, Result<Vec<u8>, RegistryError>> {
        Box::pin(async move {
            let (bytes, _digest) = self
                .client
                .pull_manifest_raw(&self.target(reference), &self.auth, ACCEPTED_MANIFESTS)
                .await
                .map_err(classify)?;
            Ok(bytes.to_vec())
        })
    }

    fn blob<'a>(
        &'a self,
        reference: &'a ImageRef,
        digest: &'a str,
        out: &'a mut (dyn AsyncWrite + Unpin + Send),
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let target = self.target(reference);
            // pull_blob authenticates with what the client has stored for the registry; make
            // sure that is this session's credentials even if no manifest was fetched first.
            self.client
                .store_auth_if_needed(target.resolve_registry(), &self.auth)
                .await;
            self.client
                .pull_blob(&target, digest, out)
                .await
                .map_err(classify)?;
            Ok(())
        })
    }
}

/// Wraps oci-client's error in a [`Failure`] saying what kind of refusal it was.
fn classify(error: OciDistributionError) -> RegistryError {
    let kind = match &error {
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => FailureKind::Unauthorized,
        OciDistributionError::RegistryError { envelope, .. } => {
            envelope
                .errors
                .first()
                .map_or(FailureKind::Other, |e| match e.code {
                    OciErrorCode::Unauthorized => FailureKind::Unauthorized,
                    OciErrorCode::Denied => FailureKind::Denied,
                    OciErrorCode::ManifestUnknown
                    | OciErrorCode::NameUnknown
                    | OciErrorCode::BlobUnknown
                    | OciErrorCode::NotFound => FailureKind::NotFound,
                    _ => FailureKind::Other,
                })
        }
        OciDistributionError::ServerError { code, .. } => match code {
            401 => FailureKind::Unauthorized,
            403 => FailureKind::Denied,
            404 => FailureKind::NotFound,
            _ => FailureKind::Other,
        },
        OciDistributionError::RequestError(e) if e.is_connect() || e.is_timeout() => {
            FailureKind::Unreachable
        }
        _ => FailureKind::Other,
    };
    Box::new(Failure {
        kind,
        source: Box::new(error),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn open_needs_a_crypto_provider_and_then_builds_a_client() {
        let endpoint = Endpoint::origin("127.0.0.1:5000", true);
        // No other test installs a provider, so the guard is exercised before we install one.
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            assert!(OciRegistry::new().open(&endpoint, None).is_err());
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let auth = RegistryAuth::basic("u", "p");
        assert!(OciRegistry::new().open(&endpoint, Some(&auth)).is_ok());
        let bearer = RegistryAuth::Bearer { token: "t".into() };
        assert!(OciRegistry::new().open(&endpoint, Some(&bearer)).is_ok());
    }

    #[test]
    fn mirror_sessions_ask_for_the_prefixed_repository_with_the_origin_as_namespace() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let session = OciSession {
            client: oci_client::Client::default(),
            auth: OciAuth::Anonymous,
            endpoint: Endpoint::parse("https://mirror.example.com/hub").unwrap(),
        };
        let target = session.target(&ImageRef::parse("busybox:1.36").unwrap());
        assert_eq!(target.resolve_registry(), "mirror.example.com");
        assert_eq!(target.repository(), "hub/library/busybox");
        assert_eq!(target.namespace(), Some("docker.io"));
        assert_eq!(target.tag(), Some("1.36"));

        let origin = OciSession {
            endpoint: Endpoint::origin("docker.io", false),
            ..session
        };
        let target = origin.target(&ImageRef::parse("busybox:1.36").unwrap());
        assert_eq!(target.resolve_registry(), "index.docker.io");
        assert_eq!(target.namespace(), None);
    }

    #[test]
    fn oci_errors_are_classified() {
        let kind = |e| super::super::failure_kind(classify(e).as_ref());
        assert_eq!(
            kind(OciDistributionError::UnauthorizedError { url: "u".into() }),
            Some(FailureKind::Unauthorized)
        );
        for (code, expected) in [
            (403, FailureKind::Denied),
            (404, FailureKind::NotFound),
            (503, FailureKind::Other),
        ] {
            let e = OciDistributionError::ServerError {
                code,
                url: "u".into(),
                message: String::new(),
            };
            assert_eq!(kind(e), Some(expected), "{code}");
        }
    }
}
