//! Running the real `crictl` against an endpoint, with JSON helpers.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The crictl binary: `$CRICTL`, else `/root/go/bin/crictl` if present, else `crictl` from `PATH`.
pub fn crictl_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("CRICTL") {
        return PathBuf::from(bin);
    }
    let go = PathBuf::from("/root/go/bin/crictl");
    if go.exists() {
        return go;
    }
    PathBuf::from("crictl")
}

/// Runs `crictl --runtime-endpoint EP --image-endpoint EP --timeout 30s ARGS...` and returns its output
/// whatever the exit status.
pub fn crictl<I, S>(endpoint: &str, args: I) -> Result<Output>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let bin = crictl_bin();
    Command::new(&bin)
        .args([
            "--runtime-endpoint",
            endpoint,
            "--image-endpoint",
            endpoint,
            "--timeout",
            "30s",
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {}", bin.display()))
}

/// Like [`crictl`], but fails unless crictl exits 0; returns trimmed stdout.
pub fn crictl_ok<I, S>(endpoint: &str, args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<std::ffi::OsString> = args
        .into_iter()
        .map(|a| a.as_ref().to_os_string())
        .collect();
    let out = crictl(endpoint, &args)?;
    if !out.status.success() {
        bail!(
            "crictl {} failed with {}: {}",
            args.iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Like [`crictl_ok`], parsing stdout as JSON (pass `-o json` yourself).
pub fn crictl_json<I, S>(endpoint: &str, args: I) -> Result<serde_json::Value>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = crictl_ok(endpoint, args)?;
    serde_json::from_str(&out).with_context(|| format!("parse crictl output as json: {out}"))
}

/// `crictl inspectp -o json ID`.
pub fn inspectp(endpoint: &str, pod_id: &str) -> Result<serde_json::Value> {
    crictl_json(endpoint, ["inspectp", "-o", "json", pod_id])
}

/// `crictl inspect -o json ID`.
pub fn inspect(endpoint: &str, container_id: &str) -> Result<serde_json::Value> {
    crictl_json(endpoint, ["inspect", "-o", "json", container_id])
}

/// `crictl inspecti -o json IMAGE`.
pub fn inspecti(endpoint: &str, image: &str) -> Result<serde_json::Value> {
    crictl_json(endpoint, ["inspecti", "-o", "json", image])
}

/// `status.state` of a container, e.g. `CONTAINER_RUNNING`, `CONTAINER_EXITED`.
pub fn container_state(endpoint: &str, container_id: &str) -> Result<String> {
    let v = inspect(endpoint, container_id)?;
    v.pointer("/status/state")
        .and_then(|s| s.as_str())
        .map(str::to_string)
        .with_context(|| format!("no status.state in inspect output: {v}"))
}

/// `status.state` of a pod, e.g. `SANDBOX_READY`, `SANDBOX_NOTREADY`.
pub fn pod_state(endpoint: &str, pod_id: &str) -> Result<String> {
    let v = inspectp(endpoint, pod_id)?;
    v.pointer("/status/state")
        .and_then(|s| s.as_str())
        .map(str::to_string)
        .with_context(|| format!("no status.state in inspectp output: {v}"))
}

/// Ids of all pods (`crictl pods -q`).
pub fn pod_ids(endpoint: &str) -> Result<Vec<String>> {
    Ok(crictl_ok(endpoint, ["pods", "-q"])?
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect())
}

/// Ids of all containers in any state (`crictl ps -a -q`).
pub fn container_ids(endpoint: &str) -> Result<Vec<String>> {
    Ok(crictl_ok(endpoint, ["ps", "-a", "-q"])?
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect())
}

/// Polls `check` every 100 ms until it returns `Ok(true)`; fails with `what` and the last error after
/// `timeout`.
pub fn wait_until<F>(what: &str, timeout: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Result<bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match check() {
            Ok(true) => return Ok(()),
            Ok(false) => None,
            Err(e) => Some(e),
        };
        if Instant::now() > deadline {
            match last {
                Some(e) => {
                    return Err(
                        e.context(format!("timed out after {timeout:?} waiting for {what}"))
                    );
                }
                None => bail!("timed out after {timeout:?} waiting for {what}"),
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
