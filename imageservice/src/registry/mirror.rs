//! [`MirroredRegistry`]: which endpoints a pull goes to, and falling from one to the next.
//!
//! For a reference on registry `R`, the endpoints are `R`'s configured mirrors in order, then `R`
//! itself unless `fallback_to_origin = false`. Credentials: the pull's own go to the origin only
//! (the kubelet chose them for `R`, a mirror is another party); when the pull has none, and for
//! every mirror, the config's credentials for that endpoint's host are used, else none.
//!
//! Within a session, each request starts at the endpoint that last answered (so an index, its
//! manifest and the blobs come from the same place) and moves on to the next on any error:
//! connection refused, 404 (a mirror that lacks the image), 5xx, auth. A blob only moves on while
//! nothing of it was written, since the caller's writer cannot be rewound. When every endpoint
//! failed, the error names each one and why.

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tokio::io::AsyncWrite;
use tracing::{debug, warn};

use super::{
    AllEndpointsFailed, Endpoint, Registry, RegistryError, RegistrySession, Transport, error_chain,
};
use crate::reference::ImageRef;
use crate::types::{RegistryAuth, RegistryHost, StoreOptions};

pub struct MirroredRegistry {
    transport: Arc<dyn Transport>,
    insecure_registries: Vec<String>,
    hosts: BTreeMap<String, RegistryHost>,
}

#[derive(Debug, thiserror::Error)]
#[error("registry {registry} has no mirrors and fallback_to_origin = false: nothing to pull from")]
struct NoEndpoint {
    registry: String,
}

impl MirroredRegistry {
    pub fn new(transport: Arc<dyn Transport>, options: &StoreOptions) -> Self {
        MirroredRegistry {
            transport,
            insecure_registries: options.insecure_registries.clone(),
            hosts: options
                .registries
                .iter()
                .map(|(host, settings)| (host_key(host).to_owned(), settings.clone()))
                .collect(),
        }
    }

    /// The endpoints tried for `registry`, in order, each with the credentials it gets.
    fn plan(
        &self,
        registry: &str,
        auth: Option<&RegistryAuth>,
    ) -> Vec<(Endpoint, Option<RegistryAuth>)> {
        let settings = self.hosts.get(host_key(registry));
        let host_auth = |host: &str| self.hosts.get(host_key(host)).and_then(|h| h.auth.clone());
        let mut plan: Vec<(Endpoint, Option<RegistryAuth>)> = settings
            .map(|s| s.mirrors.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|mirror| (mirror.clone(), host_auth(mirror.host())))
            .collect();
        if settings.is_none_or(|s| s.fallback_to_origin) {
            // Like Docker, a registry on this machine's loopback may be plain HTTP without being
            // configured: its traffic never leaves the host.
            let plain_http = self.insecure_registries.iter().any(|r| r == registry)
                || settings.is_some_and(|s| s.insecure)
                || is_loopback(registry);
            let auth = auth.cloned().or_else(|| host_auth(registry));
            plan.push((Endpoint::origin(registry, plain_http), auth));
        }
        plan
    }
}

impl Registry for MirroredRegistry {
    fn connect(
        &self,
        reference: &ImageRef,
        auth: Option<&RegistryAuth>,
    ) -> Result<Box<dyn RegistrySession>, RegistryError> {
        let mut plan = self.plan(reference.registry(), auth);
        for (endpoint, auth) in &plan {
            debug!(%reference, %endpoint, auth = auth.as_ref().map(RegistryAuth::principal), "registry endpoint");
        }
        if plan.len() == 1
            && let Some((endpoint, auth)) = plan.pop()
        {
            // Nothing to fall back to: the endpoint's own errors are the clearest.
            return self.transport.open(&endpoint, auth.as_ref());
        }
        if plan.is_empty() {
            return Err(Box::new(NoEndpoint {
                registry: reference.registry().to_owned(),
            }));
        }
        Ok(Box::new(FallbackSession {
            transport: Arc::clone(&self.transport),
            slots: plan
                .into_iter()
                .map(|(endpoint, auth)| Slot {
                    endpoint,
                    auth,
                    session: OnceLock::new(),
                })
                .collect(),
            current: AtomicUsize::new(0),
        }))
    }
}

/// Config keys and references both name Docker Hub `docker.io`; accept its other names too.
fn host_key(host: &str) -> &str {
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        other => other,
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

struct FallbackSession {
    transport: Arc<dyn Transport>,
    slots: Vec<Slot>,
    /// Index of the endpoint that answered last; requests start there.
    current: AtomicUsize,
}

/// One endpoint of a [`FallbackSession`]. Its session (an HTTP client, which costs tens of
/// milliseconds to build) is opened the first time the endpoint is tried: usually the first
/// mirror answers and the others are never needed.
struct Slot {
    endpoint: Endpoint,
    auth: Option<RegistryAuth>,
    session: OnceLock<Box<dyn RegistrySession>>,
}

impl FallbackSession {
    /// Endpoint indexes in the order to try them: the current one, then the others in order.
    fn order(&self) -> Vec<usize> {
        let current = self.current.load(Ordering::Relaxed);
        std::iter::once(current)
            .chain((0..self.slots.len()).filter(|i| *i != current))
            .collect()
    }

    fn session<'a>(&self, slot: &'a Slot) -> Result<&'a dyn RegistrySession, RegistryError> {
        if let Some(session) = slot.session.get() {
            return Ok(session.as_ref());
        }
        let opened = self.transport.open(&slot.endpoint, slot.auth.as_ref())?;
        // A concurrent request may have opened one too; either is fine, one is kept.
        Ok(slot.session.get_or_init(|| opened).as_ref())
    }

    fn failed(&self, what: &str, reference: &ImageRef, endpoint: &Endpoint, error: &RegistryError) {
        warn!(%reference, %endpoint, what, error = %error_chain(error.as_ref()),
            "registry endpoint failed; trying the next one");
    }
}

impl RegistrySession for FallbackSession {
    fn manifest<'a>(
        &'a self,
        reference: &'a ImageRef,
    ) -> BoxFuture<'a, Result<Vec<u8>, RegistryError>> {
        Box::pin(async move {
            let mut attempts = Vec::new();
            for i in self.order() {
                let slot = &self.slots[i];
                let endpoint = &slot.endpoint;
                let result = match self.session(slot) {
                    Ok(session) => session.manifest(reference).await,
                    Err(error) => Err(error),
                };
                match result {
                    Ok(bytes) => {
                        self.current.store(i, Ordering::Relaxed);
                        return Ok(bytes);
                    }
                    Err(error) => {
                        self.failed("manifest", reference, endpoint, &error);
                        attempts.push((endpoint.to_string(), error));
                    }
                }
            }
            Err(Box::new(AllEndpointsFailed { attempts }) as RegistryError)
        })
    }

    fn blob<'a>(
        &'a self,
        reference: &'a ImageRef,
        digest: &'a str,
        out: &'a mut (dyn AsyncWrite + Unpin + Send),
    ) -> BoxFuture<'a, Result<(), RegistryError>> {
        Box::pin(async move {
            let mut attempts = Vec::new();
            let mut counting = Counting {
                inner: out,
                written: 0,
            };
            for i in self.order() {
                let slot = &self.slots[i];
                let endpoint = &slot.endpoint;
                let result = match self.session(slot) {
                    Ok(session) => session.blob(reference, digest, &mut counting).await,
                    Err(error) => Err(error),
                };
                match result {
                    Ok(()) => {
                        self.current.store(i, Ordering::Relaxed);
                        return Ok(());
                    }
                    Err(error) => {
                        let partial = counting.written > 0;
                        if !partial {
                            self.failed(digest, reference, endpoint, &error);
                        }
                        attempts.push((endpoint.to_string(), error));
                        if partial {
                            break;
                        }
                    }
                }
            }
            Err(Box::new(AllEndpointsFailed { attempts }) as RegistryError)
        })
    }
}

/// Counts the bytes that reached the caller's writer.
struct Counting<'a> {
    inner: &'a mut (dyn AsyncWrite + Unpin + Send),
    written: u64,
}

impl AsyncWrite for Counting<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut *this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled {
            this.written += *n as u64;
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

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
