//! A container's root filesystem: a private copy of the image's files (so writes never reach the shared,
//! read-only image), and path resolution inside it that never escapes it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// How many symlinks one resolution may follow (Linux's own limit is 40).
const MAX_SYMLINKS: usize = 40;

/// Copies the tree at `src` to `dst` (which must not exist), keeping symlinks as symlinks and file modes.
pub fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dst)?;
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let from = entry.path();
        let to = dst.join(entry.file_name());
        let ty = entry.file_type()?;
        if ty.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&from)?, &to)?;
        } else if ty.is_dir() {
            copy_tree(&from, &to)?;
            fs::set_permissions(&to, fs::metadata(&from)?.permissions())?;
        } else if ty.is_file() {
            fs::copy(&from, &to)?;
        }
        // Devices, sockets and fifos are not copied: a Wasm guest cannot use them.
    }
    Ok(())
}

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

/// Finds the program a container runs: `argv0` as an absolute path, relative to `workdir`, or searched in the
/// container's `PATH`, as a shell would. Returns the guest path and the host path of a regular file.
pub fn find_program(
    root: &Path,
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
        let host = resolve_in_root(root, &guest)?;
        return is_file(&host).then_some((guest, host));
    }
    let search = path_env.unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    search.split(':').filter(|d| !d.is_empty()).find_map(|dir| {
        let guest = format!("{}/{argv0}", dir.trim_end_matches('/'));
        let host = resolve_in_root(root, &guest)?;
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
    fn copy_keeps_symlinks_and_content() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        fs::create_dir_all(src.join("a")).unwrap();
        fs::write(src.join("a/f"), b"x").unwrap();
        std::os::unix::fs::symlink("a/f", src.join("l")).unwrap();
        let dst = d.path().join("dst");
        copy_tree(&src, &dst).unwrap();
        assert_eq!(fs::read(dst.join("a/f")).unwrap(), b"x");
        assert_eq!(fs::read_link(dst.join("l")).unwrap(), Path::new("a/f"));
    }
}
