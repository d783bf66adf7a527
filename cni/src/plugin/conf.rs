//! CNI network configuration: finding the file that applies in a config directory and turning it into a
//! plugin list, the way libcni (and so containerd) does.
//!
//! The files ending in `.conflist`, `.conf` or `.json` are sorted by name and the first one is used; a
//! `.conflist` is a list as written, any other file is a single plugin config wrapped into a one-plugin list
//! (libcni's `ConfListFromConf`). A broken first file is an error, not a reason to skip to the next one: the
//! administrator put it first, so running pods on another network would be a surprise.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::NetError;

/// The CNI spec versions whose configs and results this crate understands.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// A network configuration list, as loaded from one file. It is serialisable because the exact list used for
/// ADD is kept with the pod, so DEL after a daemon restart (or after the file changed) runs the same chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkConfigList {
    pub name: String,
    pub cni_version: String,
    /// CHECK is skipped for lists that set `disableCheck` (and for versions before 0.4.0, which lack CHECK).
    pub disable_check: bool,
    /// Each plugin's config object exactly as written (`type`, `capabilities`, plugin-specific keys).
    pub plugins: Vec<Map<String, Value>>,
    /// The file it came from, for messages.
    pub source: PathBuf,
}

impl NetworkConfigList {
    /// The `type` of plugin `index` (validated at load time to be a plain file name).
    pub fn plugin_type(&self, index: usize) -> &str {
        self.plugins
            .get(index)
            .and_then(|p| p.get("type"))
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// Whether CHECK applies to this list (CNI 0.4.0 introduced it).
    pub fn supports_check(&self) -> bool {
        !self.disable_check && !self.cni_version.starts_with("0.3.")
    }
}

/// The config files of `dir` that libcni would consider, sorted by name. A missing directory has none.
pub fn conf_files(dir: &Path) -> Result<Vec<PathBuf>, NetError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(NetError::ReadConfDir {
                dir: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| NetError::ReadConfDir {
            dir: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        let wanted = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "conflist" | "conf" | "json"));
        // Follow symlinks (config management often links files in); directories are not configs.
        if wanted && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Loads the first config file of `dir` as a plugin list.
pub fn load_first(dir: &Path) -> Result<NetworkConfigList, NetError> {
    let files = conf_files(dir)?;
    let first = files.first().ok_or_else(|| NetError::NoConfig {
        dir: dir.to_path_buf(),
    })?;
    load_file(first)
}

/// Loads one config file (`.conflist` as a list, anything else as a single plugin).
pub fn load_file(path: &Path) -> Result<NetworkConfigList, NetError> {
    let bytes = std::fs::read(path).map_err(|source| NetError::ReadConf {
        path: path.to_path_buf(),
        source,
    })?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|source| NetError::ParseConf {
        path: path.to_path_buf(),
        source,
    })?;
    let invalid = |reason: String| NetError::InvalidConf {
        path: path.to_path_buf(),
        reason,
    };
    let Value::Object(object) = value else {
        return Err(invalid("the file is not a JSON object".into()));
    };
    let is_list = path.extension().and_then(|e| e.to_str()) == Some("conflist");
    let list = if is_list {
        list_from_object(object, path).map_err(invalid)?
    } else {
        if object.contains_key("plugins") {
            return Err(invalid(
                "a plugin list must be in a file ending in .conflist".into(),
            ));
        }
        let name = string_key(&object, "name").map_err(invalid)?;
        let cni_version = string_key(&object, "cniVersion").map_err(invalid)?;
        NetworkConfigList {
            name,
            cni_version,
            disable_check: false,
            plugins: vec![object],
            source: path.to_path_buf(),
        }
    };
    validate(&list).map_err(invalid)?;
    Ok(list)
}

fn list_from_object(
    mut object: Map<String, Value>,
    path: &Path,
) -> Result<NetworkConfigList, String> {
    let name = string_key(&object, "name")?;
    let cni_version = string_key(&object, "cniVersion")?;
    let disable_check = match object.get("disableCheck") {
        None => false,
        Some(Value::Bool(b)) => *b,
        // libcni accepts the string spellings too.
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        Some(_) => return Err("\"disableCheck\" must be a boolean".into()),
    };
    let plugins = match object.remove("plugins") {
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::Object(plugin) => Ok(plugin),
                _ => Err(format!("plugins[{i}] is not a JSON object")),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => return Err("\"plugins\" must be an array".into()),
        None => return Err("a .conflist needs a \"plugins\" array".into()),
    };
    Ok(NetworkConfigList {
        name,
        cni_version,
        disable_check,
        plugins,
        source: path.to_path_buf(),
    })
}

fn string_key(object: &Map<String, Value>, key: &str) -> Result<String, String> {
    match object.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(_) => Err(format!("\"{key}\" must be a non-empty string")),
        None => Err(format!("\"{key}\" is missing")),
    }
}

fn validate(list: &NetworkConfigList) -> Result<(), String> {
    if !SUPPORTED_VERSIONS.contains(&list.cni_version.as_str()) {
        return Err(format!(
            "cniVersion {:?} is not supported (supported: {})",
            list.cni_version,
            SUPPORTED_VERSIONS.join(", ")
        ));
    }
    if list.plugins.is_empty() {
        return Err("the plugin list is empty".into());
    }
    for (i, plugin) in list.plugins.iter().enumerate() {
        let ty = string_key(plugin, "type").map_err(|e| format!("plugins[{i}]: {e}"))?;
        // The type becomes a file name looked up in the plugin directories: never a path.
        if ty.contains('/') || ty == "." || ty == ".." {
            return Err(format!(
                "plugins[{i}]: type {ty:?} must be a plain file name"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn missing_or_empty_directory_has_no_config() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            load_first(&dir.path().join("nope")),
            Err(NetError::NoConfig { .. })
        ));
        write(dir.path(), "README", "not a config");
        assert!(matches!(
            load_first(dir.path()),
            Err(NetError::NoConfig { .. })
        ));
    }

    #[test]
    fn first_file_in_lexical_order_wins() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "20-b.conflist",
            r#"{"cniVersion":"1.0.0","name":"b","plugins":[{"type":"bridge"}]}"#,
        );
        write(
            dir.path(),
            "10-a.conflist",
            r#"{"cniVersion":"0.4.0","name":"a","disableCheck":true,"plugins":[{"type":"bridge"},{"type":"portmap","capabilities":{"portMappings":true}}]}"#,
        );
        let list = load_first(dir.path()).unwrap();
        assert_eq!(list.name, "a");
        assert_eq!(list.cni_version, "0.4.0");
        assert!(list.disable_check);
        assert!(!list.supports_check());
        assert_eq!(list.plugins.len(), 2);
        assert_eq!(list.plugin_type(1), "portmap");
    }

    #[test]
    fn single_conf_becomes_a_one_plugin_list() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "99-net.conf",
            r#"{"cniVersion":"1.0.0","name":"net","type":"bridge","bridge":"cni0"}"#,
        );
        let list = load_first(dir.path()).unwrap();
        assert_eq!(list.name, "net");
        assert_eq!(list.plugins.len(), 1);
        assert_eq!(list.plugins[0]["bridge"], "cni0");
        assert!(list.supports_check());
    }

    #[test]
    fn broken_configs_are_reported_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        for (text, reason) in [
            (
                r#"{"name":"x","plugins":[{"type":"bridge"}]}"#,
                "cniVersion",
            ),
            (r#"{"cniVersion":"1.0.0","name":"x","plugins":[]}"#, "empty"),
            (
                r#"{"cniVersion":"1.0.0","name":"x","plugins":[{"bridge":"b"}]}"#,
                "type",
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"../../bin/sh"}]}"#,
                "plain file name",
            ),
            (
                r#"{"cniVersion":"9.9.9","name":"x","plugins":[{"type":"bridge"}]}"#,
                "not supported",
            ),
        ] {
            write(dir.path(), "a.conflist", text);
            let err = load_first(dir.path()).unwrap_err();
            assert!(err.to_string().contains(reason), "{err} / {reason}");
        }
        write(dir.path(), "a.conflist", "{not json");
        assert!(matches!(
            load_first(dir.path()),
            Err(NetError::ParseConf { .. })
        ));
    }
}
