//! Plain data types of the public API: what the daemon passes in and gets back. No CRI or gRPC
//! types here; the daemon maps these to CRI messages.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Settings of an [`ImageStore`](crate::ImageStore) that come from the daemon's configuration.
#[derive(Clone, Debug, Default)]
pub struct StoreOptions {
    /// Registries (`host:port`, as written in references) reached over plain HTTP; all others use
    /// HTTPS.
    pub insecure_registries: Vec<String>,
}

/// Credentials for one pull (CRI `AuthConfig` username/password; token variants come later).
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
}

// Hand-written so the password never reaches a log line.
impl fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
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
