//! Errors of the networking crate.

use std::path::PathBuf;

/// A failed networking operation; the cause is kept as the source.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("creating network namespace directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("creating network namespace mount point {path}")]
    CreateMountPoint {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "unsharing a new network namespace (wasm-cri needs root or CAP_SYS_ADMIN for pod network namespaces)"
    )]
    Unshare(#[source] nix::Error),
    #[error("pinning network namespace at {path}")]
    Pin {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("bringing up the loopback interface in {path}")]
    LoopbackUp {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("unmounting network namespace {path}")]
    Unmount {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("removing network namespace file {path}")]
    RemoveFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the network namespace worker thread for {path} panicked")]
    WorkerPanicked { path: PathBuf },
    #[error("spawning the network namespace worker thread for {path}")]
    SpawnWorker {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
