//! Applies layers, in order, to a private directory that becomes an image's rootfs. Blocking
//! code: callers run it on a blocking thread, and can stop it between entries through a cancel
//! flag (a pull whose caller went away). Tar layers are untrusted input, so: entry names go
//! through [`safe_path`], device nodes and fifos are skipped (a Wasm guest has no use for them and
//! they are dangerous on the host), setuid/setgid bits and ownership are dropped, OCI whiteouts
//! (`.wh.<name>`, `.wh..wh..opq`) delete lower-layer content, and the uncompressed stream is
//! checked against the config's diff id when one is given. A raw Wasm layer becomes one file at
//! the root, under a name the pull chose and checked, after its preamble was checked.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use sha2::{Digest as _, Sha256};
use tar::EntryType;
use tracing::debug;

use crate::digest::Digest;
use crate::error::ImageError;
use crate::fsutil::remove_any;
use crate::safe_path;

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// Every Wasm binary, module or component, starts with `\0asm`.
const WASM_MAGIC: [u8; 4] = *b"\0asm";
const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";

/// One layer blob to apply.
pub(crate) struct LayerSource {
    pub path: PathBuf,
    pub digest: Digest,
    /// Expected sha256 of the uncompressed content, from the config's `rootfs.diff_ids`.
    pub diff_id: Option<Digest>,
    pub kind: LayerKind,
}

pub(crate) enum LayerKind {
    Tar,
    /// A raw Wasm binary placed at `/<file_name>`; `file_name` is one plain path component.
    Wasm {
        file_name: String,
        media_type: String,
    },
}

pub(crate) fn unpack_layers(
    layers: &[LayerSource],
    dest: &Path,
    cancel: &AtomicBool,
) -> Result<(), ImageError> {
    for layer in layers {
        match &layer.kind {
            LayerKind::Tar => apply_layer(layer, dest, cancel)?,
            LayerKind::Wasm {
                file_name,
                media_type,
            } => place_wasm(layer, file_name, media_type, dest)?,
        }
    }
    Ok(())
}

fn cancelled(cancel: &AtomicBool) -> Result<(), ImageError> {
    if cancel.load(Ordering::Relaxed) {
        return Err(ImageError::Cancelled {
            op: "unpacking layers",
        });
    }
    Ok(())
}

/// Copies a raw Wasm layer to `dest/<file_name>` (mode 0755, so a PATH search finds it too).
fn place_wasm(
    layer: &LayerSource,
    file_name: &str,
    media_type: &str,
    dest: &Path,
) -> Result<(), ImageError> {
    let layer_name = layer.digest.to_string();
    // The blob was verified against its digest; a raw layer's diff id is that same digest.
    if let Some(expected) = &layer.diff_id
        && expected != &layer.digest
    {
        return Err(ImageError::DiffIdMismatch {
            layer: layer_name,
            expected: expected.to_string(),
            actual: layer.digest.to_string(),
        });
    }
    let mut head = [0u8; 4];
    let mut file =
        File::open(&layer.path).map_err(ImageError::io("open layer blob", &layer.path))?;
    let is_wasm = match file.read_exact(&mut head) {
        Ok(()) => head == WASM_MAGIC,
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => false,
        Err(source) => {
            return Err(ImageError::ReadLayer {
                layer: layer_name,
                source,
            });
        }
    };
    if !is_wasm {
        return Err(ImageError::NotWasm {
            layer: layer_name,
            media_type: media_type.to_owned(),
        });
    }
    let path = dest.join(file_name);
    let unpack_error = |source| ImageError::UnpackEntry {
        layer: layer.digest.to_string(),
        path: file_name.to_owned(),
        source,
    };
    // A lower layer may have left a directory or a symlink there; the new file replaces it.
    remove_any(&path).map_err(unpack_error)?;
    fs::copy(&layer.path, &path).map_err(unpack_error)?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).map_err(unpack_error)?;
    debug!(layer = %layer.digest, file = %path.display(), "placed raw Wasm layer");
    Ok(())
}

fn apply_layer(layer: &LayerSource, dest: &Path, cancel: &AtomicBool) -> Result<(), ImageError> {
    let read_error = |source| ImageError::ReadLayer {
        layer: layer.digest.to_string(),
        source,
    };
    let file = File::open(&layer.path).map_err(ImageError::io("open layer blob", &layer.path))?;
    let mut buffered = BufReader::new(file);
    // Magic bytes rather than the media type decide, as in Docker: some registries and tools
    // label compressed layers as plain tar and vice versa.
    let gzipped = buffered
        .fill_buf()
        .map_err(read_error)?
        .starts_with(&GZIP_MAGIC);
    let stream: Box<dyn Read> = if gzipped {
        Box::new(flate2::read::MultiGzDecoder::new(buffered))
    } else {
        Box::new(buffered)
    };
    let mut hashing = HashingReader {
        inner: stream,
        hasher: Sha256::new(),
    };
    {
        let mut archive = tar::Archive::new(&mut hashing);
        let mut applier = Applier {
            dest,
            layer: layer.digest.to_string(),
            written: HashSet::new(),
        };
        for entry in archive.entries().map_err(read_error)? {
            cancelled(cancel)?;
            applier.apply(entry.map_err(read_error)?)?;
        }
    }
    // The diff id covers the whole stream, including the end-of-archive blocks tar stops at.
    io::copy(&mut hashing, &mut io::sink()).map_err(read_error)?;
    if let Some(expected) = &layer.diff_id {
        let actual = Digest::from_hasher(hashing.hasher);
        if &actual != expected {
            return Err(ImageError::DiffIdMismatch {
                layer: layer.digest.to_string(),
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
    }
    Ok(())
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// State of one layer being applied.
struct Applier<'a> {
    dest: &'a Path,
    layer: String,
    /// Paths this layer created: an opaque whiteout removes everything else in its directory.
    written: HashSet<PathBuf>,
}

impl Applier<'_> {
    fn apply<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), ImageError> {
        let raw = entry
            .path()
            .map_err(|source| ImageError::ReadLayer {
                layer: self.layer.clone(),
                source,
            })?
            .into_owned();
        let shown = raw.display().to_string();
        let unsafe_entry = |reason| ImageError::UnsafeLayerEntry {
            layer: self.layer.clone(),
            path: shown.clone(),
            reason,
        };
        let unpack_error = |source| ImageError::UnpackEntry {
            layer: self.layer.clone(),
            path: shown.clone(),
            source,
        };
        let rel = safe_path::entry_path(&raw).map_err(unsafe_entry)?;
        let (Some(name), Some(parent_rel)) = (rel.file_name(), rel.parent()) else {
            // The root directory itself (`./`): its metadata is ours to choose.
            return Ok(());
        };
        // Bytes, not str: names need not be UTF-8 and must be created exactly as given.
        let name_bytes = name.as_bytes();

        if name_bytes == OPAQUE_WHITEOUT.as_bytes() {
            let parent = self.parent(parent_rel).map_err(unpack_error)?;
            return self.make_opaque(&parent).map_err(unpack_error);
        }
        if let Some(hidden) = name_bytes.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            if matches!(hidden, b"" | b"." | b"..") {
                return Err(unsafe_entry("whiteout names no entry"));
            }
            // Nothing to hide when the directory does not exist in the lower layers.
            return match safe_path::resolve_dir(self.dest, parent_rel, false)
                .map_err(unpack_error)?
            {
                Some(parent) => {
                    remove_any(&parent.join(OsStr::from_bytes(hidden))).map_err(unpack_error)
                }
                None => Ok(()),
            };
        }

        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::Char
                | EntryType::Block
                | EntryType::Fifo
                | EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            debug!(layer = %self.layer, path = %shown, ?kind, "skipping special layer entry");
            return Ok(());
        }
        let path = self.parent(parent_rel).map_err(unpack_error)?.join(name);

        match kind {
            EntryType::Directory => self.directory(&entry, &path).map_err(unpack_error)?,
            EntryType::Symlink => {
                let target = link_name(&entry).map_err(unpack_error)?;
                let target = safe_path::symlink_target(&rel, &target).map_err(unsafe_entry)?;
                remove_any(&path).map_err(unpack_error)?;
                std::os::unix::fs::symlink(&target, &path).map_err(unpack_error)?;
            }
            EntryType::Link => {
                let target = link_name(&entry).map_err(unpack_error)?;
                let target_rel = safe_path::entry_path(&target).map_err(unsafe_entry)?;
                let source = self.existing(&target_rel).map_err(unpack_error)?;
                if source != path {
                    remove_any(&path).map_err(unpack_error)?;
                    fs::hard_link(&source, &path).map_err(unpack_error)?;
                }
            }
            // Regular files, and whatever else POSIX says to treat as one.
            _ => {
                remove_any(&path).map_err(unpack_error)?;
                // tar creates the file with O_EXCL after our removal (never following a link we
                // did not see) and keeps only the 0o777 permission bits.
                entry.unpack(&path).map_err(unpack_error)?;
            }
        }
        self.written.insert(path);
        Ok(())
    }

    /// The directory `rel` inside the rootfs, created if missing.
    fn parent(&self, rel: &Path) -> io::Result<PathBuf> {
        safe_path::resolve_dir(self.dest, rel, true)?
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    /// Path of an entry that must already exist (hard link source), resolved inside the rootfs.
    fn existing(&self, rel: &Path) -> io::Result<PathBuf> {
        let (Some(name), Some(parent)) = (rel.file_name(), rel.parent()) else {
            return Err(io::Error::other("hard link to the root directory"));
        };
        let dir = safe_path::resolve_dir(self.dest, parent, false)?
            .ok_or_else(|| io::Error::other("hard link source does not exist"))?;
        let path = dir.join(name);
        if fs::symlink_metadata(&path)?.is_dir() {
            return Err(io::Error::other("hard link to a directory"));
        }
        Ok(path)
    }

    fn directory<R: Read>(&self, entry: &tar::Entry<'_, R>, path: &Path) -> io::Result<()> {
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                remove_any(path)?;
                fs::create_dir(path)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(path)?,
            Err(e) => return Err(e),
        }
        // Owner rwx always: later entries must be writable into it, and the store (maybe not
        // root) must be able to delete the tree again.
        let mode = entry.header().mode().unwrap_or(0o755) & 0o777 | 0o700;
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
    }

    fn make_opaque(&self, dir: &Path) -> io::Result<()> {
        for child in fs::read_dir(dir)? {
            let child = child?.path();
            if !self.written.contains(&child) {
                remove_any(&child)?;
            }
        }
        Ok(())
    }
}

fn link_name<R: Read>(entry: &tar::Entry<'_, R>) -> io::Result<PathBuf> {
    entry
        .link_name()?
        .map(|name| name.into_owned())
        .ok_or_else(|| io::Error::other("link entry without a target"))
}

#[cfg(test)]
#[path = "unpack_tests.rs"]
mod tests;
