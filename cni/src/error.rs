//! Errors of the networking crate.

use std::path::PathBuf;
use std::time::Duration;

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
    #[error("reading CNI config directory {dir}")]
    ReadConfDir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no network config found in {dir} (files ending in .conflist, .conf or .json)")]
    NoConfig { dir: PathBuf },
    #[error("reading CNI config file {path}")]
    ReadConf {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing CNI config file {path}")]
    ParseConf {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid CNI config file {path}: {reason}")]
    InvalidConf { path: PathBuf, reason: String },
    #[error("CNI plugin {plugin:?} not found in {dirs:?}")]
    PluginNotFound { plugin: String, dirs: Vec<PathBuf> },
    #[error("encoding the {command} request for CNI plugin {plugin}")]
    EncodeRequest {
        plugin: String,
        command: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("running CNI plugin {plugin} ({path}) for {command}")]
    Exec {
        plugin: String,
        path: PathBuf,
        command: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("CNI plugin {plugin} did not finish {command} within {timeout:?} and was killed")]
    Timeout {
        plugin: String,
        command: &'static str,
        timeout: Duration,
    },
    /// The plugin exited non-zero; `code`, `msg` and `details` are its JSON error (CNI spec "Error"), or
    /// `code` 0 and its stderr/stdout text when it printed no JSON error.
    #[error("CNI plugin {plugin} failed {command} with code {code}: {msg}{}", fmt_details(.details))]
    PluginFailed {
        plugin: String,
        command: &'static str,
        code: u32,
        msg: String,
        details: String,
    },
    #[error("the pod's network was attached by the {backend:?} backend, which is not this one")]
    ForeignAttachment { backend: String },
    #[error("native pod network")]
    Native(#[from] crate::native::NativeError),
    #[error("CNI plugin {plugin} answered {command} with a result that cannot be decoded")]
    BadResult {
        plugin: String,
        command: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

fn fmt_details(details: &str) -> String {
    if details.is_empty() {
        String::new()
    } else {
        format!(" ({details})")
    }
}

/// An error and its causes on one line (`a: b: c`), for status messages and logs.
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
