//! The real [`Registry`]: oci-client over HTTPS, or plain HTTP for the configured insecure
//! registries. One oci-client `Client` per session, because the client keeps the first
//! credentials it sees per registry and caches tokens per repository.

use std::time::Duration;

use futures::future::BoxFuture;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth as OciAuth;
use tokio::io::AsyncWrite;

use super::{Registry, RegistryError, RegistrySession};
use crate::manifest::ACCEPTED_MANIFESTS;
use crate::reference::ImageRef;
use crate::types::RegistryAuth;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest silence while reading a response; a stalled registry fails the pull instead of
/// hanging it until the kubelet gives up.
const READ_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Clone, Debug, Default)]
pub struct OciRegistry {
    insecure_registries: Vec<String>,
}

impl OciRegistry {
    /// `insecure_registries`: `host:port` names reached over plain HTTP.
    pub fn new(insecure_registries: Vec<String>) -> Self {
        OciRegistry {
            insecure_registries,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("no rustls crypto provider is installed (the daemon installs ring at startup)")]
struct NoCryptoProvider;

impl Registry for OciRegistry {
    fn connect(
        &self,
        reference: &ImageRef,
        auth: Option<&RegistryAuth>,
    ) -> Result<Box<dyn RegistrySession>, RegistryError> {
        // reqwest panics while building its TLS config when no provider is installed.
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            return Err(Box::new(NoCryptoProvider));
        }
        let mut plain_http = self.insecure_registries.clone();
        // Like Docker, a registry on this machine's loopback may be plain HTTP without being configured:
        // its traffic never leaves the host.
        if is_loopback(reference.registry()) {
            plain_http.push(reference.registry().to_string());
        }
        let config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(plain_http),
            // Index resolution happens on our side (crate::platform), with the raw index.
            platform_resolver: None,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            ..ClientConfig::default()
        };
        let client = oci_client::Client::try_from(config)?;
        let auth = match auth {
            Some(a) if !(a.username.is_empty() && a.password.is_empty()) => {
                OciAuth::Basic(a.username.clone(), a.password.clone())
            }
            _ => OciAuth::Anonymous,
        };
        Ok(Box::new(OciSession { client, auth }))
    }
}

/// Whether `registry` (`host`, `host:port`, `[v6]:port`) names this machine's loopback.
fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => registry.rsplit_once(':').map_or(registry, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

struct OciSession {
    client: oci_client::Client,
    auth: OciAuth,
}

impl RegistrySession for OciSession {
    fn manifest<'a>(
        &'a self,
        reference: &'a ImageRef,
    ) -> BoxFuture<'a, Result<Vec<u8>, RegistryError>> {
        Box::pin(async move {
            let (bytes, _digest) = self
                .client
                .pull_manifest_raw(&reference.to_oci(), &self.auth, ACCEPTED_MANIFESTS)
                .await?;
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
            let reference = reference.to_oci();
            // pull_blob authenticates with what the client has stored for the registry; make
            // sure that is this session's credentials even if no manifest was fetched first.
            self.client
                .store_auth_if_needed(reference.resolve_registry(), &self.auth)
                .await;
            self.client.pull_blob(&reference, digest, out).await?;
            Ok(())
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn connect_needs_a_crypto_provider_and_then_builds_a_client() {
        let reference = ImageRef::parse("127.0.0.1:5000/x").unwrap();
        let registry = OciRegistry::new(vec!["127.0.0.1:5000".into()]);
        // No other test installs a provider, so the guard is exercised before we install one.
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            assert!(registry.connect(&reference, None).is_err());
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let auth = RegistryAuth {
            username: "u".into(),
            password: "p".into(),
        };
        assert!(registry.connect(&reference, Some(&auth)).is_ok());
    }

    #[test]
    fn loopback_registries() {
        for r in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
        ] {
            assert!(is_loopback(r), "{r}");
        }
        for r in [
            "docker.io",
            "10.0.0.1:5000",
            "registry.local:5000",
            "[fe80::1]:5000",
        ] {
            assert!(!is_loopback(r), "{r}");
        }
    }
}
