//! Path rules for unpacking untrusted layers. Entry names must be relative and free of `..`;
//! parent directories are resolved with the rootfs as `/` (a symlink in a lower layer can never
//! lead a write outside it); symlink targets that would climb out of the rootfs are refused and
//! absolute ones are rewritten to relative ones, so even a consumer that follows links naively
//! (e.g. a copy into a container dir) stays inside the image.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Linux's own limit (MAXSYMLINKS) on links followed while resolving one path.
const MAX_SYMLINKS: usize = 40;

/// Turns an archive entry name into a relative path of plain components (`./a/b` → `a/b`).
pub(crate) fn entry_path(name: &Path) -> Result<PathBuf, &'static str> {
    let mut out = PathBuf::new();
    for component in name.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err("path contains `..`"),
            Component::RootDir | Component::Prefix(_) => return Err("path is absolute"),
        }
    }
    Ok(out)
}

/// Resolves the directory `rel` inside `root` the way a chroot would: `..` stops at `root` and
/// symlinks (absolute ones relative to `root`) are followed inside `root`. Missing components are
/// created when `create` is set; otherwise `Ok(None)` means the directory does not exist.
pub(crate) fn resolve_dir(root: &Path, rel: &Path, create: bool) -> io::Result<Option<PathBuf>> {
    let mut resolved: Vec<OsString> = Vec::new();
    let mut pending: VecDeque<OsString> = VecDeque::new();
    push_front(&mut pending, &mut resolved, rel);
    let mut links = 0;
    while let Some(part) = pending.pop_front() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        if part == "." || part.is_empty() {
            continue;
        }
        let candidate: PathBuf = std::iter::once(root.as_os_str())
            .chain(resolved.iter().map(OsString::as_os_str))
            .chain(std::iter::once(part.as_os_str()))
            .collect();
        match fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(io::Error::other("too many levels of symbolic links"));
                }
                let target = fs::read_link(&candidate)?;
                push_front(&mut pending, &mut resolved, &target);
            }
            Ok(meta) if meta.is_dir() => resolved.push(part),
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!("{} is not a directory", candidate.display()),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                fs::create_dir(&candidate)?;
                resolved.push(part);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    Ok(Some(
        std::iter::once(root.as_os_str())
            .chain(resolved.iter().map(OsString::as_os_str))
            .collect(),
    ))
}

/// Queues the components of `path` before the remaining ones; an absolute path restarts at root.
fn push_front(pending: &mut VecDeque<OsString>, resolved: &mut Vec<OsString>, path: &Path) {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::Prefix(_) => {
                resolved.clear();
                parts.clear();
            }
            Component::CurDir => {}
            Component::ParentDir => parts.push(OsString::from("..")),
            Component::Normal(p) => parts.push(p.to_os_string()),
        }
    }
    for part in parts.into_iter().rev() {
        pending.push_front(part);
    }
}

/// Checks the target of a symlink stored at `link` (relative to the rootfs) and returns the target
/// to create: relative targets must not climb above the rootfs; absolute ones are made relative to
/// the link's directory so they resolve inside the rootfs wherever it is mounted or copied.
pub(crate) fn symlink_target(link: &Path, target: &Path) -> Result<PathBuf, &'static str> {
    if target.as_os_str().is_empty() {
        return Err("symlink target is empty");
    }
    let depth = link.parent().map_or(0, |p| p.components().count());
    if target.is_absolute() {
        let mut inside: Vec<&std::ffi::OsStr> = Vec::new();
        for component in target.components() {
            match component {
                Component::Normal(p) => inside.push(p),
                // `/..` is `/` in a chroot.
                Component::ParentDir => {
                    inside.pop();
                }
                _ => {}
            }
        }
        let mut rel: PathBuf = std::iter::repeat_n(Path::new(".."), depth).collect();
        rel.extend(inside);
        if rel.as_os_str().is_empty() {
            rel.push(".");
        }
        return Ok(rel);
    }
    let mut level = depth;
    for component in target.components() {
        match component {
            Component::ParentDir if level == 0 => return Err("symlink target escapes the rootfs"),
            Component::ParentDir => level -= 1,
            Component::Normal(_) => level += 1,
            _ => {}
        }
    }
    Ok(target.to_path_buf())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn entry_paths() {
        assert_eq!(entry_path(Path::new("./a/b")).unwrap(), Path::new("a/b"));
        assert_eq!(entry_path(Path::new("./")).unwrap(), Path::new(""));
        assert!(entry_path(Path::new("../x")).is_err());
        assert!(entry_path(Path::new("a/../../x")).is_err());
        assert!(entry_path(Path::new("/etc/passwd")).is_err());
    }

    #[test]
    fn symlinks_in_parents_stay_inside_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        fs::create_dir(&root).unwrap();
        symlink("/etc", root.join("abs")).unwrap();
        symlink("../../../../..", root.join("up")).unwrap();
        let got = resolve_dir(&root, Path::new("abs/x"), true)
            .unwrap()
            .unwrap();
        assert_eq!(got, root.join("etc/x"));
        let got = resolve_dir(&root, Path::new("up/y"), true)
            .unwrap()
            .unwrap();
        assert_eq!(got, root.join("y"));
        assert!(root.join("etc/x").is_dir() && root.join("y").is_dir());
        assert_eq!(
            resolve_dir(&root, Path::new("missing"), false).unwrap(),
            None
        );
    }

    #[test]
    fn symlink_loops_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        symlink("b", dir.path().join("a")).unwrap();
        symlink("a", dir.path().join("b")).unwrap();
        assert!(resolve_dir(dir.path(), Path::new("a/x"), true).is_err());
    }

    #[test]
    fn symlink_targets() {
        let t = |link: &str, target: &str| symlink_target(Path::new(link), Path::new(target));
        assert_eq!(t("bin/sh", "busybox").unwrap(), Path::new("busybox"));
        assert_eq!(t("a/b/c", "../../x").unwrap(), Path::new("../../x"));
        assert!(t("a/b", "../../x").is_err());
        assert!(t("x", "../etc/passwd").is_err());
        assert_eq!(t("lib", "/usr/lib").unwrap(), Path::new("usr/lib"));
        assert_eq!(
            t("a/b/lib", "/../usr/lib").unwrap(),
            Path::new("../../usr/lib")
        );
        assert_eq!(t("a/root", "/").unwrap(), Path::new(".."));
        assert_eq!(t("root", "/").unwrap(), Path::new("."));
        assert!(t("x", "").is_err());
    }
}
