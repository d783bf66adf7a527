//! Paths as a guest sees them, resolved to host paths inside a container's root directory without ever
//! escaping it: what the daemon uses to find a container's program at create, and the pod process to find an
//! exec's program.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// How many symlinks one resolution may follow (Linux's own limit is 40).
const MAX_SYMLINKS: usize = 40;

/// Resolves `guest` (an absolute path as the container sees it) to a host path inside `root`, following
/// symlinks the way the guest would: absolute targets restart at `root`, `..` stops at `root`.
pub fn resolve_in_root(root: &Path, guest: &str) -> Option<PathBuf> {
    let mut pending: Vec<String> = components(guest);
    pending.reverse();
    let mut resolved: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        match part.as_str() {
            "." => continue,
            ".." => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        let candidate = join(root, &resolved).join(&part);
        match fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return None;
                }
                let target = fs::read_link(&candidate).ok()?;
                let target = target.to_string_lossy().into_owned();
                if target.starts_with('/') {
                    resolved.clear();
                }
                let mut more = components(&target);
                more.reverse();
                pending.extend(more);
            }
            Ok(_) => resolved.push(part),
            Err(_) => return None,
        }
    }
    Some(join(root, &resolved))
}

fn components(p: &str) -> Vec<String> {
    Path::new(p)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

fn join(root: &Path, parts: &[String]) -> PathBuf {
    let mut p = root.to_path_buf();
    p.extend(parts);
    p
}

/// A directory the guest sees at `guest` (an absolute path), backed by host directory `host`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount<'a> {
    pub guest: &'a str,
    pub host: &'a Path,
}

/// Resolves guest path `guest` through the guest's directories: the mount with the longest matching guest
/// prefix holds it (as in a mount table), and the rest of the path is resolved inside that mount.
pub fn resolve_in_mounts(mounts: &[Mount<'_>], guest: &str) -> Option<PathBuf> {
    let parts = components(guest);
    let mount = mounts
        .iter()
        .filter_map(|m| {
            let prefix = components(m.guest);
            parts.starts_with(&prefix).then_some((prefix.len(), m))
        })
        .max_by_key(|(len, _)| *len)?;
    let rest = parts[mount.0..].join("/");
    resolve_in_root(mount.1.host, &format!("/{rest}"))
}

/// Finds the program a container runs: `argv0` as an absolute path, relative to `workdir`, or searched in the
/// container's `PATH`, as a shell would. Returns the guest path and the host path of a regular file.
pub fn find_program(
    root: &Path,
    argv0: &str,
    path_env: Option<&str>,
    workdir: &str,
) -> Option<(String, PathBuf)> {
    find_program_in(
        &[Mount {
            guest: "/",
            host: root,
        }],
        argv0,
        path_env,
        workdir,
    )
}

/// [`find_program`] across all the guest's directories (its root and its volume mounts).
pub fn find_program_in(
    mounts: &[Mount<'_>],
    argv0: &str,
    path_env: Option<&str>,
    workdir: &str,
) -> Option<(String, PathBuf)> {
    let is_file = |host: &Path| fs::metadata(host).map(|m| m.is_file()).unwrap_or(false);
    if argv0.contains('/') {
        let guest = if argv0.starts_with('/') {
            argv0.to_string()
        } else {
            format!("{}/{argv0}", workdir.trim_end_matches('/'))
        };
        let host = resolve_in_mounts(mounts, &guest)?;
        return is_file(&host).then_some((guest, host));
    }
    let search = path_env.unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    search.split(':').filter(|d| !d.is_empty()).find_map(|dir| {
        let guest = format!("{}/{argv0}", dir.trim_end_matches('/'));
        let host = resolve_in_mounts(mounts, &guest)?;
        let executable = fs::metadata(&host)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false);
        executable.then_some((guest, host))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_stay_inside_root() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::write(root.join("bin/app.wasm"), b"\0asm").unwrap();
        std::os::unix::fs::symlink("/bin/app.wasm", root.join("bin/app")).unwrap();
        std::os::unix::fs::symlink("../../../../etc/passwd", root.join("bin/evil")).unwrap();
        assert_eq!(
            resolve_in_root(root, "/bin/app").unwrap(),
            root.join("bin/app.wasm")
        );
        // ../ at the root stays at the root: /etc/passwd inside the rootfs, which does not exist.
        assert_eq!(resolve_in_root(root, "/bin/evil"), None);
    }

    #[test]
    fn program_is_found_on_path_and_by_absolute_path() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        fs::write(root.join("usr/bin/tool"), b"\0asm").unwrap();
        fs::set_permissions(root.join("usr/bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
        let (guest, host) = find_program(root, "tool", Some("/bin:/usr/bin"), "/").unwrap();
        assert_eq!(guest, "/usr/bin/tool");
        assert_eq!(host, root.join("usr/bin/tool"));
        assert!(find_program(root, "/usr/bin/tool", None, "/").is_some());
        assert!(find_program(root, "bin/tool", None, "/usr").is_some());
        assert!(find_program(root, "missing", None, "/").is_none());
    }

    #[test]
    fn mounts_hold_their_subtree() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        let vol = d.path().join("vol");
        fs::create_dir_all(root.join("data")).unwrap();
        fs::create_dir_all(&vol).unwrap();
        fs::write(root.join("data/x"), b"root").unwrap();
        fs::write(vol.join("x"), b"vol").unwrap();
        let mounts = [
            Mount {
                guest: "/",
                host: &root,
            },
            Mount {
                guest: "/data",
                host: &vol,
            },
        ];
        assert_eq!(
            resolve_in_mounts(&mounts, "/data/x").unwrap(),
            vol.join("x")
        );
        assert_eq!(resolve_in_mounts(&mounts, "/datax"), None);
        let (guest, host) = find_program_in(&mounts, "/data/x", None, "/").unwrap();
        assert_eq!((guest.as_str(), host), ("/data/x", vol.join("x")));
    }
}
