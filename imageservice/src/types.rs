//! Plain data types of the public API: what the daemon passes in and gets back. No CRI or gRPC
//! types here; the daemon maps these to CRI messages.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::error::ImageError;
use crate::registry::Endpoint;

/// Settings of an [`ImageStore`](crate::ImageStore) that come from the daemon's configuration.
#[derive(Clone, Debug, Default)]
pub struct StoreOptions {
    /// Registries (`host:port`, as written in references) reached over plain HTTP; all others use
    /// HTTPS.
    pub insecure_registries: Vec<String>,
    /// Per-registry settings, keyed by the registry as written in normalised references
    /// (`docker.io`, `registry.k8s.io`, `127.0.0.1:5000`).
    pub registries: BTreeMap<String, RegistryHost>,
}

/// How to reach one registry: mirrors tried before it, and its credentials.
#[derive(Clone, Debug)]
pub struct RegistryHost {
    /// Tried in order before the origin.
    pub mirrors: Vec<Endpoint>,
    /// Whether the origin is contacted when every mirror failed (or there are none).
    pub fallback_to_origin: bool,
    /// The origin speaks plain HTTP.
    pub insecure: bool,
    /// Credentials for this host, whether it is contacted as an origin or as a mirror endpoint.
    /// A pull's own credentials win for the origin.
    pub auth: Option<RegistryAuth>,
}

impl Default for RegistryHost {
    fn default() -> Self {
        RegistryHost {
            mirrors: Vec::new(),
            fallback_to_origin: true,
            insecure: false,
            auth: None,
        }
    }
}

/// Credentials for one registry: CRI `AuthConfig` or the config file.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum RegistryAuth {
    /// HTTP basic credentials (the registry may exchange them for a token).
    Basic { username: String, password: String },
    /// A bearer token sent as is (CRI `registry_token`).
    Bearer { token: String },
}

impl RegistryAuth {
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> Self {
        RegistryAuth::Basic {
            username: username.into(),
            password: password.into(),
        }
    }

    /// Decodes Docker's `auth` field: base64 of `user:password` (padding optional).
    pub fn from_base64(auth: &str) -> Result<Self, ImageError> {
        let invalid = |reason: &'static str| ImageError::InvalidAuth { reason };
        let trimmed = auth.trim().trim_end_matches('=');
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(trimmed)
            .map_err(|_| invalid("`auth` is not base64"))?;
        let text = String::from_utf8(bytes).map_err(|_| invalid("`auth` is not UTF-8"))?;
        let (username, password) = text
            .split_once(':')
            .ok_or_else(|| invalid("`auth` does not decode to user:password"))?;
        Ok(RegistryAuth::basic(username, password))
    }

    /// Who is authenticating, safe to log (never the secret).
    pub fn principal(&self) -> String {
        match self {
            RegistryAuth::Basic { username, .. } => format!("basic:{username}"),
            RegistryAuth::Bearer { .. } => "bearer token".to_owned(),
        }
    }
}

// Hand-written so the password or token never reaches a log line.
impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryAuth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            RegistryAuth::Bearer { .. } => f
                .debug_struct("Bearer")
                .field("token", &"<redacted>")
                .finish(),
        }
    }
}

/// A pulled image as recorded in the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// `sha256:<config digest hex>`.
    pub id: String,
    /// Normalised `registry/repository:tag` names pointing at this image.
    pub repo_tags: Vec<String>,
    /// `registry/repository@sha256:<manifest or index digest>`.
    pub repo_digests: Vec<String>,
    /// Sum of the compressed layer sizes.
    pub size: u64,
    pub config: ImageConfig,
    pub os: String,
    pub architecture: String,
    /// The unpacked layers: read-only and shared, containers copy or overlay it.
    pub rootfs: PathBuf,
    /// Unix nanoseconds of the latest pull.
    pub pulled_at: i64,
}

/// The runtime defaults from the `config` object of the image config JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub labels: BTreeMap<String, String>,
    /// Keys of `ExposedPorts`, e.g. `8080/tcp`.
    pub exposed_ports: Vec<String>,
}

/// Space used by the store, for CRI `ImageFsInfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsUsage {
    /// Bytes allocated on disk (hard links counted once).
    pub used_bytes: u64,
    /// Distinct inodes under the root, the root included.
    pub inodes_used: u64,
    /// The store root.
    pub mountpoint: String,
}
