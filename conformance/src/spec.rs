//! Builders for the pod and container config JSON files that `crictl runp` / `crictl create` read
//! (CRI v1 messages with the snake_case field names of the Go structs).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

/// Process-unique suffix so pod uids never collide between tests.
fn unique() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// `PodSandboxConfig.dns_config`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsConfig {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// `PodSandboxConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodConfig {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub attempt: u32,
    pub hostname: Option<String>,
    pub log_directory: Option<PathBuf>,
    pub dns: Option<DnsConfig>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// `linux.sysctls`.
    pub sysctls: BTreeMap<String, String>,
    /// `linux.security_context.namespace_options.ipc` NODE.
    pub host_ipc: bool,
}

impl PodConfig {
    /// A pod in namespace `default` with a process-unique uid and nothing else set.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            namespace: "default".to_string(),
            uid: format!("uid-{name}-{}", unique()),
            attempt: 0,
            hostname: None,
            log_directory: None,
            dns: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            sysctls: BTreeMap::new(),
            host_ipc: false,
        }
    }

    pub fn sysctl(mut self, name: &str, value: &str) -> Self {
        self.sysctls.insert(name.to_string(), value.to_string());
        self
    }

    pub fn host_ipc(mut self) -> Self {
        self.host_ipc = true;
        self
    }

    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespace = namespace.to_string();
        self
    }

    pub fn uid(mut self, uid: &str) -> Self {
        self.uid = uid.to_string();
        self
    }

    pub fn attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    pub fn hostname(mut self, hostname: &str) -> Self {
        self.hostname = Some(hostname.to_string());
        self
    }

    pub fn log_directory(mut self, dir: impl Into<PathBuf>) -> Self {
        self.log_directory = Some(dir.into());
        self
    }

    pub fn dns(mut self, dns: DnsConfig) -> Self {
        self.dns = Some(dns);
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.to_string(), value.to_string());
        self
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "uid": self.uid,
                "attempt": self.attempt,
            },
            "labels": self.labels,
            "annotations": self.annotations,
            "linux": {},
        });
        if let Some(hostname) = &self.hostname {
            v["hostname"] = json!(hostname);
        }
        if !self.sysctls.is_empty() {
            v["linux"]["sysctls"] = json!(self.sysctls);
        }
        if self.host_ipc {
            // CRI NamespaceMode NODE = 2.
            v["linux"]["security_context"]["namespace_options"]["ipc"] = json!(2);
        }
        if let Some(dir) = &self.log_directory {
            v["log_directory"] = json!(dir.to_string_lossy());
        }
        if let Some(dns) = &self.dns {
            v["dns_config"] = json!({
                "servers": dns.servers,
                "searches": dns.searches,
                "options": dns.options,
            });
        }
        v
    }
}

/// `Mount`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub container_path: String,
    pub host_path: PathBuf,
    pub readonly: bool,
    pub recursive_read_only: bool,
}

/// `ContainerConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerConfig {
    pub name: String,
    pub attempt: u32,
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub envs: Vec<(String, String)>,
    pub mounts: Vec<Mount>,
    pub working_dir: Option<String>,
    /// Relative to the pod's log_directory.
    pub log_path: Option<String>,
    pub memory_limit_in_bytes: Option<i64>,
    pub readonly_rootfs: bool,
    /// `linux.security_context.masked_paths` and `readonly_paths`.
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    /// CRI `stdin` and `stdin_once`.
    pub stdin: bool,
    pub stdin_once: bool,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// `linux.security_context` identity: run_as_user, run_as_group, run_as_username, supplemental_groups.
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub run_as_username: Option<String>,
    pub supplemental_groups: Vec<i64>,
    /// `linux.security_context.capabilities`.
    pub add_capabilities: Vec<String>,
    pub drop_capabilities: Vec<String>,
}

impl ContainerConfig {
    /// A container of `image` with `log_path` `<name>.log`.
    pub fn new(name: &str, image: &str) -> Self {
        Self {
            name: name.to_string(),
            attempt: 0,
            image: image.to_string(),
            command: Vec::new(),
            args: Vec::new(),
            envs: Vec::new(),
            mounts: Vec::new(),
            working_dir: None,
            log_path: Some(format!("{name}.log")),
            memory_limit_in_bytes: None,
            readonly_rootfs: false,
            masked_paths: Vec::new(),
            readonly_paths: Vec::new(),
            stdin: false,
            stdin_once: false,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            run_as_user: None,
            run_as_group: None,
            run_as_username: None,
            supplemental_groups: Vec::new(),
            add_capabilities: Vec::new(),
            drop_capabilities: Vec::new(),
        }
    }

    pub fn capabilities(mut self, add: &[&str], drop: &[&str]) -> Self {
        self.add_capabilities = add.iter().map(|s| s.to_string()).collect();
        self.drop_capabilities = drop.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn run_as_user(mut self, uid: i64) -> Self {
        self.run_as_user = Some(uid);
        self
    }

    pub fn run_as_group(mut self, gid: i64) -> Self {
        self.run_as_group = Some(gid);
        self
    }

    pub fn run_as_username(mut self, name: &str) -> Self {
        self.run_as_username = Some(name.to_string());
        self
    }

    pub fn supplemental_groups(mut self, gids: &[i64]) -> Self {
        self.supplemental_groups = gids.to_vec();
        self
    }

    pub fn attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    pub fn command<I: IntoIterator<Item = S>, S: Into<String>>(mut self, command: I) -> Self {
        self.command = command.into_iter().map(Into::into).collect();
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.to_string(), value.to_string()));
        self
    }

    pub fn mount(
        mut self,
        container_path: &str,
        host_path: impl Into<PathBuf>,
        readonly: bool,
    ) -> Self {
        self.mounts.push(Mount {
            container_path: container_path.to_string(),
            host_path: host_path.into(),
            readonly,
            recursive_read_only: false,
        });
        self
    }

    /// A recursive read-only mount (`readonly` and `recursive_read_only`, private propagation).
    pub fn mount_rro(mut self, container_path: &str, host_path: impl Into<PathBuf>) -> Self {
        self.mounts.push(Mount {
            container_path: container_path.to_string(),
            host_path: host_path.into(),
            readonly: true,
            recursive_read_only: true,
        });
        self
    }

    /// An invalid mount for error tests: `recursive_read_only` without `readonly`.
    pub fn mount_rro_writable(
        mut self,
        container_path: &str,
        host_path: impl Into<PathBuf>,
    ) -> Self {
        self.mounts.push(Mount {
            container_path: container_path.to_string(),
            host_path: host_path.into(),
            readonly: false,
            recursive_read_only: true,
        });
        self
    }

    /// Gives the container a stdin that attached clients write to; `once`: it ends with the first client's.
    pub fn stdin(mut self, once: bool) -> Self {
        self.stdin = true;
        self.stdin_once = once;
        self
    }

    /// Adds a `linux.security_context.masked_paths` entry.
    pub fn masked_path(mut self, path: &str) -> Self {
        self.masked_paths.push(path.to_string());
        self
    }

    /// Adds a `linux.security_context.readonly_paths` entry.
    pub fn readonly_path(mut self, path: &str) -> Self {
        self.readonly_paths.push(path.to_string());
        self
    }

    /// `linux.security_context.readonly_rootfs`.
    pub fn readonly_rootfs(mut self) -> Self {
        self.readonly_rootfs = true;
        self
    }

    pub fn working_dir(mut self, dir: &str) -> Self {
        self.working_dir = Some(dir.to_string());
        self
    }

    /// `None` leaves log_path unset (no log file).
    pub fn log_path(mut self, path: Option<&str>) -> Self {
        self.log_path = path.map(str::to_string);
        self
    }

    pub fn memory_limit(mut self, bytes: i64) -> Self {
        self.memory_limit_in_bytes = Some(bytes);
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }

    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.to_string(), value.to_string());
        self
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "metadata": { "name": self.name, "attempt": self.attempt },
            "image": { "image": self.image },
            "command": self.command,
            "args": self.args,
            "envs": self.envs.iter().map(|(k, val)| json!({ "key": k, "value": val })).collect::<Vec<_>>(),
            "mounts": self.mounts.iter().map(|m| json!({
                "container_path": m.container_path,
                "host_path": m.host_path.to_string_lossy(),
                "readonly": m.readonly,
                "recursive_read_only": m.recursive_read_only,
            })).collect::<Vec<_>>(),
            "labels": self.labels,
            "annotations": self.annotations,
            "linux": {},
        });
        if let Some(dir) = &self.working_dir {
            v["working_dir"] = json!(dir);
        }
        if let Some(path) = &self.log_path {
            v["log_path"] = json!(path);
        }
        if let Some(bytes) = self.memory_limit_in_bytes {
            v["linux"]["resources"] = json!({ "memory_limit_in_bytes": bytes });
        }
        if self.stdin {
            v["stdin"] = json!(true);
            v["stdin_once"] = json!(self.stdin_once);
        }
        if self.readonly_rootfs || !self.masked_paths.is_empty() || !self.readonly_paths.is_empty()
        {
            v["linux"]["security_context"] = json!({
                "readonly_rootfs": self.readonly_rootfs,
                "masked_paths": self.masked_paths,
                "readonly_paths": self.readonly_paths,
            });
        }
        if let Some(uid) = self.run_as_user {
            v["linux"]["security_context"]["run_as_user"] = json!({ "value": uid });
        }
        if let Some(gid) = self.run_as_group {
            v["linux"]["security_context"]["run_as_group"] = json!({ "value": gid });
        }
        if let Some(name) = &self.run_as_username {
            v["linux"]["security_context"]["run_as_username"] = json!(name);
        }
        if !self.add_capabilities.is_empty() || !self.drop_capabilities.is_empty() {
            v["linux"]["security_context"]["capabilities"] = json!({
                "add_capabilities": self.add_capabilities,
                "drop_capabilities": self.drop_capabilities,
            });
        }
        if !self.supplemental_groups.is_empty() {
            v["linux"]["security_context"]["supplemental_groups"] = json!(self.supplemental_groups);
        }
        v
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn pod_json_has_crictl_field_names() {
        let pod = PodConfig::new("p")
            .hostname("h")
            .log_directory("/tmp/logs")
            .dns(DnsConfig {
                servers: vec!["10.0.0.10".into()],
                searches: vec![],
                options: vec![],
            })
            .to_json();
        assert_eq!(pod["metadata"]["name"], "p");
        assert_eq!(pod["metadata"]["namespace"], "default");
        assert_eq!(pod["hostname"], "h");
        assert_eq!(pod["log_directory"], "/tmp/logs");
        assert_eq!(pod["dns_config"]["servers"][0], "10.0.0.10");
        assert_ne!(PodConfig::new("p").uid, PodConfig::new("p").uid);
    }

    #[test]
    fn container_json_has_crictl_field_names() {
        let c = ContainerConfig::new("c", "127.0.0.1:5000/wasm/hello:latest")
            .command(["/hello.wasm"])
            .args(["a", "b"])
            .env("K", "V")
            .mount("/data", "/tmp/data", true)
            .memory_limit(64 << 20)
            .to_json();
        assert_eq!(c["image"]["image"], "127.0.0.1:5000/wasm/hello:latest");
        assert_eq!(c["command"][0], "/hello.wasm");
        assert_eq!(c["args"][1], "b");
        assert_eq!(c["envs"][0]["key"], "K");
        assert_eq!(c["mounts"][0]["container_path"], "/data");
        assert_eq!(c["mounts"][0]["readonly"], true);
        assert_eq!(c["log_path"], "c.log");
        assert_eq!(c["linux"]["resources"]["memory_limit_in_bytes"], 64 << 20);
    }
}
