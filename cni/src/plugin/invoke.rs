//! Running one CNI plugin binary once, per the CNI spec's execution protocol: the `CNI_*` environment (on top
//! of the daemon's own, as libcni does, so plugins find `iptables` and friends on `PATH`), the network
//! config on stdin, a result or a JSON error on stdout, and the exit status. Plugins are separate
//! processes, so namespace switching is their business, never a thread of ours.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tracing::debug;

use crate::error::NetError;

/// The CNI operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
        }
    }
}

/// The per-call environment (CNI spec "Parameters").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    pub container_id: String,
    /// `CNI_NETNS`; empty when the namespace is already gone (allowed for DEL only).
    pub netns: String,
    pub ifname: String,
    /// `CNI_ARGS` as `KEY=VALUE;...`.
    pub args: String,
    /// `CNI_PATH`: the plugin directories, `:`-separated.
    pub path: String,
}

/// The error object a failing plugin prints (CNI spec "Error").
#[derive(Debug, Default, Deserialize)]
struct PluginError {
    #[serde(default)]
    code: u32,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    details: String,
}

/// Finds plugin `name` in `dirs`, first match wins (libcni's `FindInPath`).
pub fn find_plugin(name: &str, dirs: &[PathBuf]) -> Result<PathBuf, NetError> {
    dirs.iter()
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| NetError::PluginNotFound {
            plugin: name.to_string(),
            dirs: dirs.to_vec(),
        })
}

/// Runs `binary` (plugin `plugin`) for `command` with `config` on stdin and returns its stdout. The process is
/// killed if it runs past `timeout` (or if the caller goes away).
pub async fn run(
    plugin: &str,
    binary: &Path,
    command: Command,
    env: &Environment,
    config: &Value,
    timeout: Duration,
) -> Result<Vec<u8>, NetError> {
    let stdin_bytes = serde_json::to_vec(config).map_err(|source| NetError::EncodeRequest {
        plugin: plugin.to_string(),
        command: command.as_str(),
        source,
    })?;
    let exec_err = |source| NetError::Exec {
        plugin: plugin.to_string(),
        path: binary.to_path_buf(),
        command: command.as_str(),
        source,
    };
    let mut child = tokio::process::Command::new(binary)
        .env("CNI_COMMAND", command.as_str())
        .env("CNI_CONTAINERID", &env.container_id)
        .env("CNI_NETNS", &env.netns)
        .env("CNI_IFNAME", &env.ifname)
        .env("CNI_ARGS", &env.args)
        .env("CNI_PATH", &env.path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(exec_err)?;
    let work = async {
        if let Some(mut stdin) = child.stdin.take() {
            // A plugin may exit without reading its input (e.g. a usage error): that is its answer, not ours.
            let _ = stdin.write_all(&stdin_bytes).await;
        }
        child.wait_with_output().await
    };
    let output = match tokio::time::timeout(timeout, work).await {
        Ok(output) => output.map_err(exec_err)?,
        Err(_) => {
            return Err(NetError::Timeout {
                plugin: plugin.to_string(),
                command: command.as_str(),
                timeout,
            });
        }
    };
    debug!(plugin, command = command.as_str(), status = %output.status, "CNI plugin finished");
    if output.status.success() {
        return Ok(output.stdout);
    }
    let parsed: Option<PluginError> = serde_json::from_slice(&output.stdout).ok();
    let (code, msg, details) = match parsed {
        Some(e) if e.code != 0 || !e.msg.is_empty() => (e.code, e.msg, e.details),
        _ => {
            // No JSON error: whatever the plugin printed is all there is to say.
            let text = [&output.stderr[..], &output.stdout[..]]
                .iter()
                .map(|b| String::from_utf8_lossy(b).trim().to_string())
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join("; ");
            (0, format!("exited with {}", output.status), text)
        }
    };
    Err(NetError::PluginFailed {
        plugin: plugin.to_string(),
        command: command.as_str(),
        code,
        msg,
        details,
    })
}
