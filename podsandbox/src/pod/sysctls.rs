//! The pod's own IPC namespace and its sysctls, set up while the pod process is still single-threaded.
//!
//! `unshare(CLONE_NEWIPC)` moves the calling thread only, so it must happen before any other thread exists;
//! every thread started afterwards (the instances' threads among them) inherits it. A sysctl is then written
//! through `/proc/sys`, which the kernel resolves in the writer's namespaces: IPC sysctls land in the pod's
//! IPC namespace and `net.*` in the pod's network namespace (already joined). The daemon has refused every
//! sysctl that is not namespaced, so nothing here can change the node.

use std::collections::HashMap;
use std::path::PathBuf;

/// A namespace or sysctl that could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("creating the pod's IPC namespace")]
    Ipc(#[source] std::io::Error),
    #[error("sysctl {name} is not known to this kernel ({path} does not exist)")]
    Unknown { name: String, path: PathBuf },
    #[error("setting sysctl {name} to {value:?}")]
    Write {
        name: String,
        value: String,
        #[source]
        source: std::io::Error,
    },
}

/// Enters a new IPC namespace. Call before any thread exists.
pub fn enter_private_ipc() -> Result<(), SetupError> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWIPC)
        .map_err(|e| SetupError::Ipc(std::io::Error::from(e)))
}

/// Writes each `name = value` (dotted names) under `/proc/sys`, in name order.
pub fn apply(sysctls: &HashMap<String, String>) -> Result<(), SetupError> {
    let mut names: Vec<&String> = sysctls.keys().collect();
    names.sort();
    for name in names {
        let value = &sysctls[name];
        let path = path_of(name);
        if !path.exists() {
            return Err(SetupError::Unknown {
                name: name.clone(),
                path,
            });
        }
        std::fs::write(&path, value.as_bytes()).map_err(|source| SetupError::Write {
            name: name.clone(),
            value: value.clone(),
            source,
        })?;
        tracing::debug!(sysctl = %name, %value, "sysctl set");
    }
    Ok(())
}

fn path_of(name: &str) -> PathBuf {
    // The daemon checked that no part is empty or `..`.
    PathBuf::from("/proc/sys").join(name.replace('.', "/"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn dotted_names_map_to_proc_sys_paths() {
        assert_eq!(
            path_of("kernel.shm_rmid_forced"),
            PathBuf::from("/proc/sys/kernel/shm_rmid_forced")
        );
        assert_eq!(
            path_of("fs.mqueue.msg_max"),
            PathBuf::from("/proc/sys/fs/mqueue/msg_max")
        );
    }

    #[test]
    fn unknown_sysctls_are_reported_by_name() {
        let err = apply(&HashMap::from([(
            "kernel.no_such_sysctl_here".to_string(),
            "1".to_string(),
        )]))
        .unwrap_err();
        assert!(
            err.to_string().contains("kernel.no_such_sysctl_here"),
            "{err}"
        );
    }
}
