//! A container's root filesystem: a private copy of the image's files (so writes never reach the shared,
//! read-only image). Path resolution inside it is `podsandbox::guest_path` (the pod process resolves exec
//! programs the same way).

use std::fs;
use std::path::Path;

pub use podsandbox::guest_path::find_program;

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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
