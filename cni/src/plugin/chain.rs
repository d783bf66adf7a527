//! A plugin list run as one network operation (libcni's `AddNetworkList`, `CheckNetworkList`,
//! `DelNetworkList`): each plugin gets its own config with the list's `name` and `cniVersion`, the result so
//! far as `prevResult`, and a `runtimeConfig` holding the capability arguments it declares in its
//! `capabilities`. ADD runs first to last, feeding each result to the next plugin; DEL runs last to first
//! with the cached ADD result.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};
use tracing::warn;

use super::conf::NetworkConfigList;
use super::invoke::{self, Command, Environment};
use crate::error::NetError;

/// Where plugins live and how long each may take.
#[derive(Debug, Clone)]
pub struct Plugins {
    pub bin_dirs: Vec<PathBuf>,
    pub timeout: Duration,
}

/// What one network operation is about: the CNI parameters plus the capability arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    pub container_id: String,
    pub netns: String,
    pub ifname: String,
    pub args: Vec<(String, String)>,
    /// Capability name → value (`portMappings`, `dns`, `bandwidth`, `ips`, ...).
    pub capability_args: Map<String, Value>,
}

impl Plugins {
    /// ADD through the whole list; returns the last plugin's result. A plugin that fails stops the chain (the
    /// caller undoes the partial work with DEL, as containerd does).
    pub async fn add(&self, list: &NetworkConfigList, inv: &Invocation) -> Result<Value, NetError> {
        let mut prev: Option<Value> = None;
        for index in 0..list.plugins.len() {
            let out = self
                .run_one(list, index, Command::Add, inv, prev.as_ref())
                .await?;
            let plugin = list.plugin_type(index);
            let result: Value =
                serde_json::from_slice(&out).map_err(|source| NetError::BadResult {
                    plugin: plugin.to_string(),
                    command: Command::Add.as_str(),
                    source,
                })?;
            prev = Some(result);
        }
        Ok(prev.unwrap_or(Value::Null))
    }

    /// CHECK through the whole list against the cached ADD result; a no-op where the list does not support it.
    pub async fn check(
        &self,
        list: &NetworkConfigList,
        inv: &Invocation,
        result: &Value,
    ) -> Result<(), NetError> {
        if !list.supports_check() {
            return Ok(());
        }
        for index in 0..list.plugins.len() {
            self.run_one(list, index, Command::Check, inv, Some(result))
                .await?;
        }
        Ok(())
    }

    /// DEL through the list in reverse. Every plugin is asked even when one fails, so a retry has as little
    /// left to do as possible; the first failure is returned. A plugin saying the container is unknown (code
    /// 3) has nothing to delete, which is what DEL wants.
    pub async fn del(
        &self,
        list: &NetworkConfigList,
        inv: &Invocation,
        result: Option<&Value>,
    ) -> Result<(), NetError> {
        // prevResult on DEL arrived with CNI 0.4.0.
        let prev = result.filter(|_| !list.cni_version.starts_with("0.3."));
        let mut first_error = None;
        for index in (0..list.plugins.len()).rev() {
            match self.run_one(list, index, Command::Del, inv, prev).await {
                Ok(_) => {}
                Err(NetError::PluginFailed { code: 3, .. }) => {}
                Err(err) => {
                    warn!(plugin = list.plugin_type(index), container_id = %inv.container_id, error = %err, "CNI DEL failed");
                    first_error.get_or_insert(err);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn run_one(
        &self,
        list: &NetworkConfigList,
        index: usize,
        command: Command,
        inv: &Invocation,
        prev: Option<&Value>,
    ) -> Result<Vec<u8>, NetError> {
        let plugin = list.plugin_type(index);
        let binary = invoke::find_plugin(plugin, &self.bin_dirs)?;
        let config = plugin_config(list, index, prev, &inv.capability_args);
        let env = Environment {
            container_id: inv.container_id.clone(),
            netns: inv.netns.clone(),
            ifname: inv.ifname.clone(),
            args: cni_args(&inv.args),
            path: self
                .bin_dirs
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(":"),
        };
        invoke::run(plugin, &binary, command, &env, &config, self.timeout).await
    }
}

/// `CNI_ARGS`: `K=V` pairs joined by `;`.
pub fn cni_args(args: &[(String, String)]) -> String {
    args.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";")
}

/// The stdin config of plugin `index` (libcni's `buildOneConfig` + `injectRuntimeConfig`).
pub fn plugin_config(
    list: &NetworkConfigList,
    index: usize,
    prev: Option<&Value>,
    capability_args: &Map<String, Value>,
) -> Value {
    let mut config = list.plugins.get(index).cloned().unwrap_or_default();
    config.insert("name".into(), Value::String(list.name.clone()));
    config.insert("cniVersion".into(), Value::String(list.cni_version.clone()));
    if let Some(prev) = prev {
        config.insert("prevResult".into(), prev.clone());
    }
    let declared = config
        .get("capabilities")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut runtime_config = Map::new();
    for (capability, enabled) in declared {
        if enabled == Value::Bool(true)
            && let Some(value) = capability_args.get(&capability)
        {
            runtime_config.insert(capability, value.clone());
        }
    }
    if !runtime_config.is_empty() {
        config.insert("runtimeConfig".into(), Value::Object(runtime_config));
    }
    Value::Object(config)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use serde_json::json;

    use super::*;

    fn list(plugins: Value, version: &str) -> NetworkConfigList {
        NetworkConfigList {
            name: "testnet".into(),
            cni_version: version.into(),
            disable_check: false,
            plugins: plugins
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_object().unwrap().clone())
                .collect(),
            source: PathBuf::from("/test.conflist"),
        }
    }

    #[test]
    fn runtime_config_only_for_declared_capabilities() {
        let l = list(
            json!([{"type":"bridge","bridge":"b0"},
                   {"type":"portmap","capabilities":{"portMappings":true,"dns":false}}]),
            "1.0.0",
        );
        let mut caps = Map::new();
        caps.insert(
            "portMappings".into(),
            json!([{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]),
        );
        caps.insert("dns".into(), json!({"servers":["1.1.1.1"]}));
        let prev = json!({"cniVersion":"1.0.0","ips":[]});

        let first = plugin_config(&l, 0, None, &caps);
        assert_eq!(
            first,
            json!({"type":"bridge","bridge":"b0","name":"testnet","cniVersion":"1.0.0"})
        );
        let second = plugin_config(&l, 1, Some(&prev), &caps);
        assert_eq!(second["prevResult"], prev);
        assert_eq!(
            second["runtimeConfig"],
            json!({"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]})
        );
        assert_eq!(second["name"], "testnet");
    }

    #[test]
    fn cni_args_are_semicolon_separated() {
        let args = vec![
            ("IgnoreUnknown".to_string(), "1".to_string()),
            ("K8S_POD_NAME".to_string(), "web".to_string()),
        ];
        assert_eq!(cni_args(&args), "IgnoreUnknown=1;K8S_POD_NAME=web");
    }

    /// A fake plugin: records its environment and stdin under `log`, answers per `CNI_COMMAND`.
    fn fake_plugin(dir: &Path, name: &str, log: &Path, script_body: &str) {
        let path = dir.join(name);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\nin=$(cat)\necho \"{name} $CNI_COMMAND id=$CNI_CONTAINERID netns=$CNI_NETNS if=$CNI_IFNAME args=$CNI_ARGS path=$CNI_PATH\" >> {log}\necho \"$in\" >> {log}.stdin\n{script_body}\n",
                log = log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn invocation() -> Invocation {
        Invocation {
            container_id: "pod1".into(),
            netns: "/run/netns/pod1".into(),
            ifname: "eth0".into(),
            args: vec![("IgnoreUnknown".into(), "1".into())],
            capability_args: Map::new(),
        }
    }

    #[tokio::test]
    async fn add_chains_results_and_del_runs_in_reverse() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        fake_plugin(
            dir.path(),
            "first",
            &log,
            r#"[ "$CNI_COMMAND" = ADD ] && echo '{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.2/24"}]}'; exit 0"#,
        );
        // The second plugin passes its prevResult through, adding nothing (as portmap does).
        fake_plugin(
            dir.path(),
            "second",
            &log,
            r#"[ "$CNI_COMMAND" = ADD ] && echo "$in" | jq -c .prevResult; exit 0"#,
        );
        let plugins = Plugins {
            bin_dirs: vec![dir.path().join("missing"), dir.path().to_path_buf()],
            timeout: Duration::from_secs(10),
        };
        let l = list(json!([{"type":"first"},{"type":"second"}]), "1.0.0");
        let result = plugins.add(&l, &invocation()).await.unwrap();
        assert_eq!(result["ips"][0]["address"], "10.0.0.2/24");
        plugins.check(&l, &invocation(), &result).await.unwrap();
        plugins.del(&l, &invocation(), Some(&result)).await.unwrap();

        let calls = std::fs::read_to_string(&log).unwrap();
        let order: Vec<_> = calls
            .lines()
            .map(|l| l.split(' ').take(2).collect::<Vec<_>>().join(" "))
            .collect();
        assert_eq!(
            order,
            [
                "first ADD",
                "second ADD",
                "first CHECK",
                "second CHECK",
                "second DEL",
                "first DEL"
            ]
        );
        let first_line = calls.lines().next().unwrap();
        assert!(
            first_line.contains("id=pod1 netns=/run/netns/pod1 if=eth0 args=IgnoreUnknown=1"),
            "{first_line}"
        );
        assert!(first_line.contains(&format!(
            "path={}:{}",
            dir.path().join("missing").display(),
            dir.path().display()
        )));
        let stdins = std::fs::read_to_string(log.with_extension("stdin")).unwrap();
        let second_add: Value = serde_json::from_str(stdins.lines().nth(1).unwrap()).unwrap();
        assert_eq!(second_add["prevResult"]["ips"][0]["address"], "10.0.0.2/24");
        let last_del: Value = serde_json::from_str(stdins.lines().last().unwrap()).unwrap();
        assert_eq!(last_del["prevResult"], result);
    }

    #[tokio::test]
    async fn plugin_errors_name_the_plugin_and_carry_its_json() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        fake_plugin(
            dir.path(),
            "bad",
            &log,
            r#"echo '{"cniVersion":"1.0.0","code":7,"msg":"bridge is busy","details":"try later"}'; exit 1"#,
        );
        let plugins = Plugins {
            bin_dirs: vec![dir.path().to_path_buf()],
            timeout: Duration::from_secs(10),
        };
        let err = plugins
            .add(&list(json!([{"type":"bad"}]), "1.0.0"), &invocation())
            .await
            .unwrap_err();
        assert!(
            matches!(err, NetError::PluginFailed { code: 7, .. }),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "CNI plugin bad failed ADD with code 7: bridge is busy (try later)"
        );

        let err = plugins
            .add(&list(json!([{"type":"absent"}]), "1.0.0"), &invocation())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("\"absent\" not found"), "{err}");
    }

    #[tokio::test]
    async fn del_tolerates_unknown_container_and_reports_other_failures_after_trying_all() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        fake_plugin(
            dir.path(),
            "gone",
            &log,
            r#"echo '{"code":3,"msg":"no such container"}'; exit 1"#,
        );
        fake_plugin(dir.path(), "broken", &log, "echo oops >&2; exit 2");
        fake_plugin(dir.path(), "fine", &log, "exit 0");
        let plugins = Plugins {
            bin_dirs: vec![dir.path().to_path_buf()],
            timeout: Duration::from_secs(10),
        };
        plugins
            .del(
                &list(json!([{"type":"fine"},{"type":"gone"}]), "0.4.0"),
                &invocation(),
                None,
            )
            .await
            .unwrap();
        let err = plugins
            .del(
                &list(json!([{"type":"fine"},{"type":"broken"}]), "0.4.0"),
                &invocation(),
                None,
            )
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("broken failed DEL with code 0: exited with exit status: 2 (oops)"),
            "{err}"
        );
        // "fine" still ran after "broken" failed.
        assert_eq!(
            std::fs::read_to_string(&log)
                .unwrap()
                .lines()
                .filter(|l| l.starts_with("fine DEL"))
                .count(),
            2
        );
    }

    #[tokio::test]
    async fn a_hanging_plugin_is_killed_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        fake_plugin(dir.path(), "slow", &log, "sleep 30");
        let plugins = Plugins {
            bin_dirs: vec![dir.path().to_path_buf()],
            timeout: Duration::from_millis(300),
        };
        let started = std::time::Instant::now();
        let err = plugins
            .add(&list(json!([{"type":"slow"}]), "1.0.0"), &invocation())
            .await
            .unwrap_err();
        assert!(matches!(err, NetError::Timeout { .. }), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn check_is_skipped_before_0_4_and_when_disabled() {
        let dir = tempfile::tempdir().unwrap();
        let plugins = Plugins {
            bin_dirs: vec![dir.path().to_path_buf()],
            timeout: Duration::from_secs(1),
        };
        // No binary exists: running anything would fail.
        let old = list(json!([{"type":"x"}]), "0.3.1");
        plugins
            .check(&old, &invocation(), &json!({}))
            .await
            .unwrap();
        let mut disabled = list(json!([{"type":"x"}]), "1.0.0");
        disabled.disable_check = true;
        plugins
            .check(&disabled, &invocation(), &json!({}))
            .await
            .unwrap();
    }
}
