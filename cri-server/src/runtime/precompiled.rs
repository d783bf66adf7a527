//! Which precompiled artifact a new container's pod process may map instead of compiling (the cache itself
//! is the image store's: `imageservice/src/precompile.rs`).
//!
//! The container runs its private copy of the image's files, so the artifact of the image's file at the same
//! path fits exactly when the copy is still that file: not written over by the pod's `/etc` files or a CRI
//! file mount (checked by inode, after all copying), and of the size the image's file has. An image pulled
//! before its Wasm was compiled (another engine, a cleared cache, an import) is compiled here, once.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use imageservice::Image;
use tracing::{debug, warn};

use super::Runtime;

impl Runtime {
    /// The artifact path for `host_program` (a file under the container's `root`) or an empty string (the pod
    /// process then compiles). Never fails: without an artifact the container is created as before.
    pub(super) async fn precompiled_path(
        &self,
        image: &Image,
        root: &Path,
        host_program: &Path,
        replaced: &[PathBuf],
    ) -> String {
        let Ok(in_image) = host_program.strip_prefix(root) else {
            return String::new();
        };
        let Ok(program) = std::fs::metadata(host_program) else {
            return String::new();
        };
        let same_inode = |p: &PathBuf| {
            std::fs::metadata(p).is_ok_and(|m| (m.dev(), m.ino()) == (program.dev(), program.ino()))
        };
        if replaced.iter().any(same_inode) {
            debug!(program = %host_program.display(), "program was written over at create; not using the precompile cache");
            return String::new();
        }
        match self.images.precompiled(image, in_image).await {
            Ok(Some(artifact)) if artifact.wasm_size == program.len() => {
                artifact.path.display().to_string()
            }
            Ok(_) => String::new(),
            Err(error) => {
                warn!(image_id = %image.id, program = %in_image.display(), %error,
                    "cannot look up the precompile cache; the pod process will compile");
                String::new()
            }
        }
    }
}
