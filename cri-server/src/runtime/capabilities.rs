//! The Linux capability set of a container, computed as containerd computes it from the CRI security context:
//! the default set of a container runtime, `ALL` in `add_capabilities` for every capability, `ALL` in
//! `drop_capabilities` for none, then the single additions and removals; `privileged` for every capability.
//!
//! The pod process gives the set to the thread running the instance (bounding set always; effective and
//! permitted when the container runs as uid 0), so the host calls made for the guest hold exactly these
//! privileges.

use proto::cri::LinuxContainerSecurityContext;

use crate::error::ServerError;

/// Capability names by number (Linux `include/uapi/linux/capability.h`, up to CAP_CHECKPOINT_RESTORE = 40).
const NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// containerd's default capabilities (`oci.DefaultCapabilities`), those of Docker.
const DEFAULT: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Every capability this table knows.
fn all() -> u64 {
    (1u64 << NAMES.len()) - 1
}

fn bit(name: &str) -> Result<u64, ServerError> {
    let upper = name.to_ascii_uppercase();
    let short = upper.strip_prefix("CAP_").unwrap_or(&upper);
    NAMES
        .iter()
        .position(|n| *n == short)
        .map(|i| 1u64 << i)
        .ok_or_else(|| {
            ServerError::InvalidArgument(format!(
                "unknown capability {name:?} in linux.security_context.capabilities"
            ))
        })
}

/// The container's capability set as a bit mask (bit n = capability number n).
pub fn resolve(security: Option<&LinuxContainerSecurityContext>) -> Result<u64, ServerError> {
    let Some(sc) = security else {
        return mask(DEFAULT);
    };
    if sc.privileged {
        return Ok(all());
    }
    let mut set = mask(DEFAULT)?;
    let Some(caps) = sc.capabilities.as_ref() else {
        return Ok(set);
    };
    let is_all = |c: &String| c.eq_ignore_ascii_case("ALL");
    if caps.add_capabilities.iter().any(is_all) {
        set = all();
    }
    if caps.drop_capabilities.iter().any(is_all) {
        set = 0;
    }
    for c in caps.add_capabilities.iter().filter(|c| !is_all(c)) {
        set |= bit(c)?;
    }
    for c in caps.drop_capabilities.iter().filter(|c| !is_all(c)) {
        set &= !bit(c)?;
    }
    Ok(set)
}

fn mask(names: &[&str]) -> Result<u64, ServerError> {
    names.iter().try_fold(0, |acc, n| Ok(acc | bit(n)?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proto::cri::Capability;

    fn with(add: &[&str], drop: &[&str]) -> LinuxContainerSecurityContext {
        LinuxContainerSecurityContext {
            capabilities: Some(Capability {
                add_capabilities: add.iter().map(|s| s.to_string()).collect(),
                drop_capabilities: drop.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn default_add_drop_and_all_follow_containerd() {
        let default = resolve(None).unwrap();
        assert_eq!(default.count_ones(), 14);
        assert_eq!(default & (1 << 13), 1 << 13, "NET_RAW is a default");
        assert_eq!(resolve(Some(&with(&["ALL"], &[]))).unwrap(), all());
        assert_eq!(resolve(Some(&with(&[], &["ALL"]))).unwrap(), 0);
        assert_eq!(
            resolve(Some(&with(&["ALL"], &["chown"]))).unwrap(),
            all() & !1
        );
        assert_eq!(
            resolve(Some(&with(&["NET_ADMIN"], &["NET_RAW"]))).unwrap(),
            (default | (1 << 12)) & !(1 << 13)
        );
        assert_eq!(
            resolve(Some(&with(&["CAP_SYS_ADMIN"], &["ALL"]))).unwrap(),
            1 << 21
        );
        let privileged = LinuxContainerSecurityContext {
            privileged: true,
            ..Default::default()
        };
        assert_eq!(resolve(Some(&privileged)).unwrap(), all());
    }

    #[test]
    fn unknown_capabilities_are_invalid() {
        assert!(matches!(
            resolve(Some(&with(&["FLY"], &[]))),
            Err(ServerError::InvalidArgument(_))
        ));
    }
}
