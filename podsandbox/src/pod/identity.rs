//! Giving the thread that runs an instance the container's Linux identity.
//!
//! Linux keeps credentials per thread; only the C library's `setuid` family broadcasts a change to every
//! thread of the process. The raw system calls used here change the calling thread alone, so each instance
//! thread holds its container's uid, gid and supplementary groups while the pod process's other threads stay
//! root. Every file access wasmtime-wasi makes for the guest happens on that thread (the WASI context allows
//! blocking the current thread), so the kernel checks it against the container's identity exactly as it would
//! for a process of a Linux container. Leaving uid 0 also clears the thread's effective capabilities, as for
//! a Linux process.

use proto::pod::RunAs;

/// Credentials that could not be taken.
#[derive(Debug, thiserror::Error)]
#[error("taking the container's identity (uid {uid}, gid {gid}, groups {groups:?}) in {step}")]
pub struct IdentityError {
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
    step: &'static str,
    #[source]
    source: std::io::Error,
}

/// Whether this process may give its threads other identities.
pub fn can_switch() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Sets the calling thread's supplementary groups, then gid, then uid (the order that keeps the privilege to
/// make the next change). Without root, succeeds only if the identity is already the process's own.
pub fn apply_to_current_thread(id: &RunAs) -> Result<(), IdentityError> {
    let err = |step: &'static str, source: std::io::Error| IdentityError {
        uid: id.uid,
        gid: id.gid,
        groups: id.additional_gids.clone(),
        step,
        source,
    };
    if !can_switch() {
        if nix::unistd::geteuid().as_raw() == id.uid && nix::unistd::getegid().as_raw() == id.gid {
            return Ok(());
        }
        return Err(err(
            "setresuid",
            std::io::Error::other(
                "the pod process is not root, so it cannot run containers as another user",
            ),
        ));
    }
    // The bounding set first: dropping from it needs CAP_SETPCAP, which the thread still has as root.
    for cap in 0..=last_capability() {
        if cap < 64 && id.capabilities & (1u64 << cap) != 0 {
            continue;
        }
        // SAFETY: prctl with integer arguments; PR_CAPBSET_DROP changes only the calling thread's bounding set.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if rc != 0 {
            return Err(err(
                "dropping capabilities",
                std::io::Error::last_os_error(),
            ));
        }
    }
    // SAFETY: as above; clears this thread's ambient set so nothing survives the uid change by that route.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if rc != 0 {
        return Err(err(
            "clearing ambient capabilities",
            std::io::Error::last_os_error(),
        ));
    }
    let groups: Vec<libc::gid_t> = id.additional_gids.clone();
    // SAFETY: `groups` is a live slice of `gid_t` whose length is passed with it; the kernel only reads it.
    let rc = unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) };
    check(rc).map_err(|e| err("setgroups", e))?;
    // SAFETY: plain integer arguments; the raw call changes only this thread's credentials (see module docs).
    let rc = unsafe { libc::syscall(libc::SYS_setresgid, id.gid, id.gid, id.gid) };
    check(rc).map_err(|e| err("setresgid", e))?;
    // SAFETY: as above.
    let rc = unsafe { libc::syscall(libc::SYS_setresuid, id.uid, id.uid, id.uid) };
    check(rc).map_err(|e| err("setresuid", e))?;
    if id.uid == 0 {
        // Still uid 0, so the thread kept its effective and permitted sets: narrow them to the container's.
        set_capabilities(id.capabilities).map_err(|e| err("capset", e))?;
    }
    Ok(())
}

/// The highest capability number this kernel knows.
fn last_capability() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// `capset(2)` on the calling thread: effective = permitted = `mask`, inheritable empty.
fn set_capabilities(mask: u64) -> std::io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    // A thread can only keep what it has: on a node (or in a VM) whose bounding set lacks a capability, "ALL"
    // means all the pod process holds.
    let mut current = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: as for capset below; the kernel writes the two `Data` elements.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut Header,
            current.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let held = u64::from(current[0].permitted) | (u64::from(current[1].permitted) << 32);
    let mask = mask & held;
    let (low, high) = (mask as u32, (mask >> 32) as u32);
    let data = [
        Data {
            effective: low,
            permitted: low,
            inheritable: 0,
        },
        Data {
            effective: high,
            permitted: high,
            inheritable: 0,
        },
    ];
    // SAFETY: `header` and the two-element `data` array are the layout capset(2) expects for version 3 and
    // live across the call; pid 0 means the calling thread.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn check(rc: libc::c_long) -> std::io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The lines of the calling thread's `/proc/thread-self/status` that describe who it is and what it may do
/// (name, identity, capabilities, no_new_privs, seccomp), with `Name:` set to `name`. Memory and scheduling
/// lines are left out: they would describe the whole pod process, not the container.
pub fn thread_status(name: &str) -> std::io::Result<String> {
    let text = std::fs::read_to_string("/proc/thread-self/status")?;
    Ok(status_lines(&text, name))
}

fn status_lines(text: &str, name: &str) -> String {
    const KEEP: &[&str] = &[
        "Umask:",
        "Uid:",
        "Gid:",
        "Groups:",
        "CapInh:",
        "CapPrm:",
        "CapEff:",
        "CapBnd:",
        "CapAmb:",
        "NoNewPrivs:",
        "Seccomp:",
        "Seccomp_filters:",
    ];
    let mut out = format!("Name:\t{name}\n");
    for line in text.lines() {
        if KEEP.iter().any(|k| line.starts_with(k)) {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn status_keeps_identity_lines_only() {
        let text = "Name:\tpod-worker\nUmask:\t0022\nState:\tR (running)\nPid:\t9\nUid:\t1001\t1001\t1001\t1001\nGid:\t1002\t1002\t1002\t1002\nGroups:\t1234 5678 \nVmRSS:\t100 kB\nCapEff:\t0000000000000000\nSeccomp:\t0\n";
        assert_eq!(
            status_lines(text, "sh"),
            "Name:\tsh\nUmask:\t0022\nUid:\t1001\t1001\t1001\t1001\nGid:\t1002\t1002\t1002\t1002\nGroups:\t1234 5678 \nCapEff:\t0000000000000000\nSeccomp:\t0\n"
        );
    }

    #[test]
    fn a_thread_takes_an_identity_without_touching_the_others() {
        if !can_switch() {
            eprintln!("skipped: needs root to change a thread's credentials");
            return;
        }
        let id = RunAs {
            uid: 1001,
            gid: 1002,
            additional_gids: vec![1002, 1234],
            capabilities: 1 << 13,
        };
        let status = std::thread::spawn(move || {
            apply_to_current_thread(&id).unwrap();
            thread_status("t").unwrap()
        })
        .join()
        .unwrap();
        assert!(status.contains("Uid:\t1001\t1001\t1001\t1001"), "{status}");
        assert!(status.contains("Gid:\t1002\t1002\t1002\t1002"), "{status}");
        assert!(status.contains("Groups:\t1002 1234"), "{status}");
        assert!(status.contains("CapEff:\t0000000000000000"), "{status}");
        assert!(status.contains("CapBnd:\t0000000000002000"), "{status}");
        let root = RunAs {
            capabilities: 1 << 1,
            ..Default::default()
        };
        let status = std::thread::spawn(move || {
            apply_to_current_thread(&root).unwrap();
            thread_status("t").unwrap()
        })
        .join()
        .unwrap();
        assert!(status.contains("CapEff:\t0000000000000002"), "{status}");
        // The test's own thread is still root.
        assert!(thread_status("t").unwrap().contains("Uid:\t0\t0\t0\t0"));
    }
}
