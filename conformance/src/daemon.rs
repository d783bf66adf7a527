//! The real `wasm-cri` daemon on a temp root: start, wait for readiness, stop/restart/kill, and a
//! cleanup on drop that removes every pod and kills whatever the daemon left behind.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::crictl;
use crate::spec::{ContainerConfig, PodConfig};

/// How to start the daemon.
#[derive(Debug, Clone)]
pub struct DaemonOpts {
    /// Passed as `--insecure-registry ADDR` (plain HTTP).
    pub registry: Option<String>,
    /// Appended after the standard arguments.
    pub extra_args: Vec<String>,
    /// Extra environment for the daemon (`RUST_LOG` defaults to `debug`).
    pub env: Vec<(String, String)>,
    /// How long to wait for the socket and `crictl version`.
    pub ready_timeout: Duration,
    /// Leave the native network backend on (its config comes from a `--config` file in `extra_args`).
    /// Off by default (`--native-network false`): concurrent test daemons would otherwise share the default
    /// bridge with separate address allocators, and tests that want pod networking bring their own.
    pub native_network: bool,
}

impl Default for DaemonOpts {
    fn default() -> Self {
        Self {
            registry: None,
            extra_args: Vec::new(),
            env: Vec::new(),
            ready_timeout: Duration::from_secs(30),
            native_network: false,
        }
    }
}

impl DaemonOpts {
    /// Default options talking to `registry` over plain HTTP.
    pub fn with_registry(registry: &str) -> Self {
        Self {
            registry: Some(registry.to_string()),
            ..Self::default()
        }
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.extra_args.push(arg.to_string());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }
}

/// The wasm-cri binary: `$WASM_CRI_BIN`, else `$CARGO_TARGET_DIR/debug/wasm-cri`, else next to the
/// running test binary's target dir, else `<workspace>/target/debug/wasm-cri`.
pub fn wasm_cri_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("WASM_CRI_BIN") {
        return PathBuf::from(bin);
    }
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(dir).join("debug").join("wasm-cri"));
    }
    // Test binaries live in <target>/<profile>/deps/.
    if let Ok(exe) = std::env::current_exe()
        && let Some(profile_dir) = exe.parent().and_then(Path::parent)
    {
        candidates.push(profile_dir.join("wasm-cri"));
    }
    let workspace_target = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("debug")
        .join("wasm-cri");
    candidates.push(workspace_target.clone());
    candidates
        .into_iter()
        .find(|c| c.exists())
        .unwrap_or(workspace_target)
}

/// A running (or stopped) daemon with its own temp dir:
/// `cri.sock`, `root/`, `state/`, `logs/` (pod log dirs), `specs/` (crictl JSON), `daemon.log`.
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    opts: DaemonOpts,
    bin: PathBuf,
    dir: tempfile::TempDir,
    specs: AtomicU64,
}

impl Daemon {
    /// Starts the daemon and waits until `crictl version` answers.
    pub fn start(opts: DaemonOpts) -> Result<Daemon> {
        // Short prefix: pod sockets live at state/pods/<64 hex>/pod.sock and sun_path holds 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("wcri")
            .tempdir()
            .context("create daemon temp dir")?;
        for sub in ["root", "state", "logs", "specs"] {
            let p = dir.path().join(sub);
            std::fs::create_dir_all(&p).with_context(|| format!("create {}", p.display()))?;
        }
        let bin = wasm_cri_bin();
        if !bin.exists() {
            bail!(
                "wasm-cri binary {} not found: build it (cargo build -p cri-server) or set WASM_CRI_BIN",
                bin.display()
            );
        }
        let mut daemon = Daemon {
            child: None,
            opts,
            bin,
            dir,
            specs: AtomicU64::new(0),
        };
        daemon.spawn()?;
        Ok(daemon)
    }

    fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .with_context(|| format!("open {}", self.log_path().display()))?;
        let log_out = log.try_clone().context("clone daemon log handle")?;
        // A restarted daemon must not find a stale socket and look ready before it listens.
        let _ = std::fs::remove_file(self.socket());
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--socket")
            .arg(self.socket())
            .arg("--root")
            .arg(self.root())
            .arg("--state")
            .arg(self.state());
        if let Some(registry) = &self.opts.registry {
            cmd.arg("--insecure-registry").arg(registry);
        }
        if !self.opts.native_network {
            cmd.arg("--native-network").arg("false");
        }
        cmd.args(&self.opts.extra_args);
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "debug");
        }
        cmd.envs(self.opts.env.iter().map(|(k, v)| (k, v)));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log_out)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawn {}", self.bin.display()))?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> Result<()> {
        let timeout = self.opts.ready_timeout;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait().context("poll daemon")?
            {
                self.child = None;
                bail!(
                    "wasm-cri exited with {status} before it was ready; log:\n{}",
                    self.log_tail(40)
                );
            }
            if self.socket().exists()
                && crictl::crictl(&self.endpoint(), ["version"]).is_ok_and(|o| o.status.success())
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "wasm-cri not ready after {timeout:?}; log:\n{}",
                    self.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `unix://<dir>/cri.sock`.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn socket(&self) -> PathBuf {
        self.dir().join("cri.sock")
    }

    pub fn root(&self) -> PathBuf {
        self.dir().join("root")
    }

    pub fn state(&self) -> PathBuf {
        self.dir().join("state")
    }

    /// Daemon stdout + stderr (appended across restarts).
    pub fn log_path(&self) -> PathBuf {
        self.dir().join("daemon.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The last `lines` lines of the daemon log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Pid of the running daemon, if any.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM and wait (up to 30 s, then SIGKILL). Pod processes keep running.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            bail!("wasm-cri is not running");
        };
        let pid = Pid::from_raw(i32::try_from(child.id()).context("daemon pid out of range")?);
        kill(pid, Signal::SIGTERM).context("send SIGTERM to wasm-cri")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().context("wait for wasm-cri")? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "wasm-cri ignored SIGTERM for 30 s and was killed; log:\n{}",
                    self.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL the daemon only (a crash); pod processes keep running.
    pub fn kill(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            bail!("wasm-cri is not running");
        };
        child.kill().context("kill wasm-cri")?;
        child.wait().context("reap wasm-cri")?;
        Ok(())
    }

    /// Starts the daemon again on the same dirs (stops it first if it is running).
    pub fn restart(&mut self) -> Result<()> {
        if self.child.is_some() {
            self.stop()?;
        }
        self.spawn()
    }

    /// [`crictl::crictl`] against this daemon.
    pub fn crictl<I, S>(&self, args: I) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        crictl::crictl(&self.endpoint(), args)
    }

    /// [`crictl::crictl_ok`] against this daemon.
    pub fn crictl_ok<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        crictl::crictl_ok(&self.endpoint(), args)
    }

    /// [`crictl::crictl_json`] against this daemon.
    pub fn crictl_json<I, S>(&self, args: I) -> Result<serde_json::Value>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        crictl::crictl_json(&self.endpoint(), args)
    }

    /// Writes `value` to `specs/<stem>-<n>.json` and returns the path.
    pub fn write_json(&self, stem: &str, value: &serde_json::Value) -> Result<PathBuf> {
        let n = self.specs.fetch_add(1, Ordering::Relaxed);
        let path = self.dir().join("specs").join(format!("{stem}-{n}.json"));
        let body = serde_json::to_vec_pretty(value).context("serialize spec")?;
        std::fs::write(&path, body).with_context(|| format!("write {}", path.display()))?;
        Ok(path)
    }

    /// A pod config whose log directory is `logs/<uid>` in this daemon's temp dir.
    pub fn pod_config(&self, name: &str) -> PodConfig {
        let pod = PodConfig::new(name);
        let logs = self.dir().join("logs").join(&pod.uid);
        pod.log_directory(logs)
    }

    /// `crictl pull IMAGE`.
    pub fn pull(&self, image: &str) -> Result<()> {
        self.crictl_ok(["pull", image]).map(drop)
    }

    /// `crictl runp`; returns the pod id.
    pub fn run_pod(&self, pod: &PodConfig) -> Result<String> {
        let path = self.write_json(&format!("pod-{}", pod.name), &pod.to_json())?;
        self.crictl_ok([OsStr::new("runp"), path.as_os_str()])
    }

    /// `crictl create --no-pull POD ctr.json pod.json`; returns the container id. The image must have
    /// been pulled (`crictl pull`).
    pub fn create_container(
        &self,
        pod_id: &str,
        container: &ContainerConfig,
        pod: &PodConfig,
    ) -> Result<String> {
        let ctr_path = self.write_json(&format!("ctr-{}", container.name), &container.to_json())?;
        let pod_path = self.write_json(&format!("pod-{}", pod.name), &pod.to_json())?;
        self.crictl_ok([
            OsStr::new("create"),
            OsStr::new("--no-pull"),
            OsStr::new(pod_id),
            ctr_path.as_os_str(),
            pod_path.as_os_str(),
        ])
    }

    /// `crictl start ID`.
    pub fn start_container(&self, container_id: &str) -> Result<()> {
        self.crictl_ok(["start", container_id]).map(drop)
    }

    /// Where the CRI log of `container` in `pod` lands (`log_directory/log_path`).
    pub fn container_log_path(
        &self,
        pod: &PodConfig,
        container: &ContainerConfig,
    ) -> Option<PathBuf> {
        Some(
            pod.log_directory
                .as_ref()?
                .join(container.log_path.as_ref()?),
        )
    }

    /// Best-effort removal of every pod through the CRI while the daemon still runs.
    fn remove_all_pods(&self) {
        let endpoint = self.endpoint();
        let Ok(pods) = crictl::pod_ids(&endpoint) else {
            return;
        };
        for pod in &pods {
            let _ = crictl::crictl(&endpoint, ["stopp", pod.as_str()]);
            let _ = crictl::crictl(&endpoint, ["rmp", "-f", pod.as_str()]);
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- wasm-cri log ({}) ---\n{}\n---",
                self.log_path().display(),
                self.log_tail(60)
            );
        }
        let descendants = self.pid().map(descendants_of).unwrap_or_default();
        if self.child.is_some() {
            self.remove_all_pods();
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        kill_leftovers(self.dir.path(), &descendants);
        unmount_under(self.dir.path());
        if std::env::var_os("WCRI_KEEP_TMP").is_some() {
            eprintln!("WCRI_KEEP_TMP: keeping {}", self.dir.path().display());
            self.dir.disable_cleanup(true);
        }
    }
}

/// Pids of all processes below `root` in the parent tree (snapshot from /proc).
fn descendants_of(root: u32) -> BTreeSet<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for pid in proc_pids() {
        if let Some(ppid) = parent_pid(pid) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut out = BTreeSet::new();
    let mut stack = vec![root];
    while let Some(p) = stack.pop() {
        for &c in children.get(&p).map(Vec::as_slice).unwrap_or_default() {
            if out.insert(c) {
                stack.push(c);
            }
        }
    }
    out
}

fn proc_pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

fn parent_pid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parens: the fields after the last ')' are "state ppid ...".
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Whether the process mentions `dir` in its cmdline or holds an open file below it.
fn uses_dir(pid: u32, dir: &Path) -> bool {
    let dir_bytes = dir.as_os_str().as_encoded_bytes();
    if let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline"))
        && cmdline.windows(dir_bytes.len()).any(|w| w == dir_bytes)
    {
        return true;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .any(|target| target.starts_with(dir))
}

/// SIGKILLs the snapshot of daemon descendants plus any process using `dir`, never this process or
/// its ancestors.
fn kill_leftovers(dir: &Path, descendants: &BTreeSet<u32>) {
    let me = std::process::id();
    let mut spared = BTreeSet::from([me]);
    let mut p = me;
    while let Some(parent) = parent_pid(p) {
        if !spared.insert(parent) || parent <= 1 {
            break;
        }
        p = parent;
    }
    let mut victims: BTreeSet<u32> = descendants
        .iter()
        .copied()
        .filter(|pid| proc_alive(*pid))
        .collect();
    victims.extend(proc_pids().into_iter().filter(|pid| uses_dir(*pid, dir)));
    for pid in victims.difference(&spared) {
        if let Ok(raw) = i32::try_from(*pid) {
            let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
        }
    }
}

fn proc_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Lazily unmounts everything mounted below `dir` (netns bind mounts and the like), deepest first.
fn unmount_under(dir: &Path) {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .map(unescape_mount_path)
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for point in points {
        let _ = nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mount_path(s: &str) -> PathBuf {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(digits) = bytes.get(i + 1..i + 4)
            && digits.iter().all(|d| (b'0'..=b'7').contains(d))
        {
            out.push(
                digits
                    .iter()
                    .fold(0u8, |acc, d| acc.wrapping_mul(8).wrapping_add(d - b'0')),
            );
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_unescape() {
        assert_eq!(
            unescape_mount_path("/tmp/a\\040b"),
            PathBuf::from("/tmp/a b")
        );
        assert_eq!(
            unescape_mount_path("/run/netns/x"),
            PathBuf::from("/run/netns/x")
        );
    }

    #[test]
    fn parent_of_self_is_known() {
        assert!(parent_pid(std::process::id()).is_some());
        assert!(descendants_of(std::process::id()).is_empty() || proc_alive(std::process::id()));
    }
}
