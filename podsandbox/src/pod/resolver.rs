//! The pod's own name resolution for the pod process: its generated `/etc/resolv.conf` and `/etc/hosts`
//! (`<state_dir>/etc/`, written by the daemon from the pod's DnsConfig and hostname) bind mounted over the
//! node's, in the pod process's private mount namespace.
//!
//! Components resolve names through `wasi:sockets/ip-name-lookup`, which wasmtime-wasi answers with the pod
//! process's `getaddrinfo`: without this, a Wasm container would resolve with the node's DNS settings while
//! its own `/etc/resolv.conf` (the pod's copy) says otherwise. A Linux container's libc reads the files of its
//! root; here the resolver is the pod process's, so it reads the same files from its own `/etc`. Needs the
//! private mount namespace (`mounts::enter_private_namespace`), so nothing leaks to the node.

use std::path::{Path, PathBuf};

use nix::mount::{MsFlags, mount};

/// The files of the pod's `etc` directory that the resolver reads.
const RESOLVER_FILES: [&str; 2] = ["resolv.conf", "hosts"];

/// A resolver file that could not be put in place.
#[derive(Debug, thiserror::Error)]
#[error("bind mounting the pod's {source_path} over {target}")]
pub struct ResolverError {
    source_path: PathBuf,
    target: PathBuf,
    #[source]
    source: nix::Error,
}

/// Binds the pod's resolver files from `state_dir/etc` over `/etc`. Files the pod or the node lacks are
/// skipped (the node's stay, or there is none to replace). Call only inside the private mount namespace.
pub fn use_pod_files(state_dir: &Path) -> Result<(), ResolverError> {
    bind_files(&state_dir.join("etc"), Path::new("/etc"))
}

fn bind_files(from: &Path, to: &Path) -> Result<(), ResolverError> {
    for name in RESOLVER_FILES {
        let (source_path, target) = (from.join(name), to.join(name));
        if !source_path.is_file() || !target.exists() {
            continue;
        }
        // Read-only: the pod process has no business changing them, and the kubelet's files never change
        // after the sandbox starts.
        mount(
            Some(&source_path),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .and_then(|()| {
            mount(
                None::<&str>,
                &target,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            )
        })
        .map_err(|source| ResolverError {
            source_path,
            target,
            source,
        })?;
    }
    Ok(())
}
