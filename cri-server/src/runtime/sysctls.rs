//! Which pod sysctls can be applied: only those the kernel keeps per namespace, so setting one changes the pod
//! and nothing else on the node. The same rule runc applies (`validateSysctl`): IPC sysctls need the pod's own
//! IPC namespace, `net.*` its own network namespace; anything else (`vm.*`, `kernel.pid_max`, ...) would change
//! the node and is refused.

use std::collections::BTreeMap;

use crate::error::ServerError;

/// IPC-namespaced sysctls outside `fs.mqueue.*` (Linux `ipc/ipc_sysctl.c`).
const IPC_SYSCTLS: &[&str] = &[
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// The namespaces a pod has of its own.
#[derive(Debug, Clone, Copy)]
pub struct PodNamespaces {
    pub ipc: bool,
    pub network: bool,
}

/// Returns `sysctls` if every one is namespaced and the pod has the namespace it lives in; else
/// InvalidArgument naming the first offender and why.
pub fn validate(
    sysctls: &std::collections::HashMap<String, String>,
    ns: PodNamespaces,
) -> Result<BTreeMap<String, String>, ServerError> {
    let mut out = BTreeMap::new();
    for (name, value) in sysctls {
        // CRI allows the `/` separator too (`net/ipv4/ip_forward`), as runc does.
        let key = name.replace('/', ".");
        if key.is_empty() || key.split('.').any(|part| part.is_empty() || part == "..") {
            return Err(ServerError::InvalidArgument(format!(
                "sysctl {name:?} is not a valid sysctl name"
            )));
        }
        if value.contains('\n') {
            return Err(ServerError::InvalidArgument(format!(
                "sysctl {name}: the value must be a single line"
            )));
        }
        let ipc = IPC_SYSCTLS.contains(&key.as_str()) || key.starts_with("fs.mqueue.");
        if ipc && !ns.ipc {
            return Err(ServerError::InvalidArgument(format!(
                "sysctl {name} is in the IPC namespace, but the pod shares the node's (hostIPC): it would change the node"
            )));
        }
        if key.starts_with("net.") && !ns.network {
            return Err(ServerError::InvalidArgument(format!(
                "sysctl {name} is in the network namespace, but the pod shares the node's (hostNetwork): it would change the node"
            )));
        }
        if !ipc && !key.starts_with("net.") {
            return Err(ServerError::InvalidArgument(format!(
                "sysctl {name} is not namespaced: setting it for one pod would change the whole node"
            )));
        }
        out.insert(key, value.clone());
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const OWN: PodNamespaces = PodNamespaces {
        ipc: true,
        network: true,
    };

    #[test]
    fn namespaced_sysctls_pass_with_their_namespace() {
        let ok = validate(
            &map(&[
                ("kernel.shm_rmid_forced", "1"),
                ("fs.mqueue.msg_max", "100"),
                ("net/ipv4/ip_unprivileged_port_start", "0"),
            ]),
            OWN,
        )
        .unwrap();
        assert_eq!(ok["net.ipv4.ip_unprivileged_port_start"], "0");
        assert_eq!(ok.len(), 3);
    }

    #[test]
    fn node_wide_or_host_namespace_sysctls_are_refused() {
        for (pairs, ns) in [
            (map(&[("vm.swappiness", "1")]), OWN),
            (map(&[("kernel.pid_max", "1")]), OWN),
            (
                map(&[("kernel.shm_rmid_forced", "1")]),
                PodNamespaces {
                    ipc: false,
                    network: true,
                },
            ),
            (
                map(&[("net.ipv4.ip_forward", "1")]),
                PodNamespaces {
                    ipc: true,
                    network: false,
                },
            ),
            (map(&[("net..x", "1")]), OWN),
            (map(&[("kernel.sem", "1\n2")]), OWN),
        ] {
            let err = validate(&pairs, ns).unwrap_err();
            assert!(matches!(err, ServerError::InvalidArgument(_)), "{err:?}");
        }
    }
}
