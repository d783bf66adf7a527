//! Verified writes into `blobs/sha256/`. A [`BlobWriter`] streams into a temp file under `tmp/`,
//! hashes and counts what it accepts, refuses bytes beyond the descriptor size, and renames the
//! file into place only when digest and size match. Dropping it (error, cancelled pull) deletes
//! the temp file, so a bad download never leaves anything behind.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::digest::Digest;
use crate::error::ImageError;
use crate::fsutil;

pub(crate) struct BlobWriter {
    file: tokio::fs::File,
    temp: tempfile::TempPath,
    hasher: Sha256,
    written: u64,
    expected: Digest,
    expected_size: Option<u64>,
    oversized: bool,
}

impl BlobWriter {
    pub(crate) fn create(
        tmp_dir: &Path,
        expected: Digest,
        expected_size: Option<u64>,
    ) -> Result<Self, ImageError> {
        let (file, temp) = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(tmp_dir)
            .map_err(ImageError::io("create temp file in", tmp_dir))?
            .into_parts();
        Ok(BlobWriter {
            file: tokio::fs::File::from_std(file),
            temp,
            hasher: Sha256::new(),
            written: 0,
            expected,
            expected_size,
            oversized: false,
        })
    }

    /// Checks what was received so far against the descriptor.
    pub(crate) fn verify(&self) -> Result<(), ImageError> {
        let size_mismatch = |actual| ImageError::SizeMismatch {
            digest: self.expected.to_string(),
            expected: self.expected_size.unwrap_or_default(),
            actual,
        };
        if self.oversized {
            // The sender went on past the descriptor size; report at least one byte too many.
            return Err(size_mismatch(self.written.saturating_add(1)));
        }
        let actual = Digest::from_hasher(self.hasher.clone());
        if actual != self.expected {
            return Err(ImageError::DigestMismatch {
                expected: self.expected.to_string(),
                actual: actual.to_string(),
            });
        }
        match self.expected_size {
            Some(size) if size != self.written => Err(size_mismatch(self.written)),
            _ => Ok(()),
        }
    }

    /// After the transport reported an error: our own verification error when all the bytes (or
    /// too many) arrived, since it names the real problem; `None` for a cut-short download.
    pub(crate) fn mismatch_after_transport_error(&self) -> Option<ImageError> {
        let complete = self.oversized || self.expected_size == Some(self.written);
        if complete { self.verify().err() } else { None }
    }

    /// Verifies, syncs and renames the temp file to `dest`, then syncs `dest`'s directory.
    pub(crate) async fn commit(mut self, dest: &Path) -> Result<(), ImageError> {
        self.verify()?;
        let temp_path = self.temp.to_path_buf();
        self.file
            .flush()
            .await
            .map_err(ImageError::io("write temp file", &temp_path))?;
        self.file
            .sync_all()
            .await
            .map_err(ImageError::io("sync temp file", &temp_path))?;
        self.temp
            .persist(dest)
            .map_err(|e| ImageError::io("rename blob into", dest)(e.error))?;
        fsutil::fsync_parent(dest)
    }
}

impl AsyncWrite for BlobWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // Cap what we accept at the descriptor size so a misbehaving registry cannot fill the
        // disk: the excess is refused and the download fails.
        let allowed = match this.expected_size {
            Some(size) => {
                let remaining = size.saturating_sub(this.written);
                if remaining == 0 && !buf.is_empty() {
                    this.oversized = true;
                    return Poll::Ready(Err(io::Error::other(
                        "registry sent more bytes than the descriptor size",
                    )));
                }
                usize::try_from(remaining).map_or(buf.len(), |r| r.min(buf.len()))
            }
            None => buf.len(),
        };
        let n = ready!(Pin::new(&mut this.file).poll_write(cx, &buf[..allowed]))?;
        this.hasher.update(&buf[..n]);
        this.written += n as u64;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().file).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().file).poll_shutdown(cx)
    }
}

/// Stores `bytes` (already in memory, e.g. a manifest) under `dest` after verifying them.
pub(crate) async fn put_bytes(
    tmp_dir: &Path,
    dest: &Path,
    digest: &Digest,
    bytes: &[u8],
) -> Result<(), ImageError> {
    let mut writer = BlobWriter::create(tmp_dir, digest.clone(), Some(bytes.len() as u64))?;
    writer
        .write_all(bytes)
        .await
        .map_err(ImageError::io("write temp file in", tmp_dir))?;
    writer.commit(dest).await
}

/// Reads a stored blob that is expected to be small (manifest, config), refusing more than `limit`.
pub(crate) async fn read_small(
    path: &Path,
    digest: &Digest,
    what: &'static str,
    limit: u64,
) -> Result<Vec<u8>, ImageError> {
    let size = tokio::fs::metadata(path)
        .await
        .map_err(ImageError::io("stat blob", path))?
        .len();
    if size > limit {
        return Err(ImageError::TooLarge {
            what,
            digest: digest.to_string(),
            size,
            limit,
        });
    }
    tokio::fs::read(path)
        .await
        .map_err(ImageError::io("read blob", path))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn dirs() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp");
        let blobs = dir.path().join("blobs");
        std::fs::create_dir(&tmp).unwrap();
        std::fs::create_dir(&blobs).unwrap();
        (dir, tmp, blobs)
    }

    fn is_empty(dir: &Path) -> bool {
        std::fs::read_dir(dir).unwrap().next().is_none()
    }

    #[tokio::test]
    async fn right_bytes_are_committed() {
        let (_dir, tmp, blobs) = dirs();
        let digest = Digest::of(b"hello");
        let dest = blobs.join(digest.hex());
        put_bytes(&tmp, &dest, &digest, b"hello").await.unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"hello");
        assert!(is_empty(&tmp));
    }

    #[tokio::test]
    async fn wrong_bytes_leave_nothing_behind() {
        let (_dir, tmp, blobs) = dirs();
        let digest = Digest::of(b"hello");
        let dest = blobs.join(digest.hex());
        let err = put_bytes(&tmp, &dest, &digest, b"jello").await.unwrap_err();
        assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
        assert!(is_empty(&tmp));
        assert!(is_empty(&blobs));
    }

    #[tokio::test]
    async fn bytes_beyond_the_descriptor_size_are_refused() {
        let (_dir, tmp, blobs) = dirs();
        let digest = Digest::of(b"hello");
        let mut writer = BlobWriter::create(&tmp, digest.clone(), Some(5)).unwrap();
        assert!(writer.write_all(b"hello world").await.is_err());
        let err = writer.verify().unwrap_err();
        assert!(
            matches!(err, ImageError::SizeMismatch { expected: 5, .. }),
            "{err}"
        );
        drop(writer);
        assert!(is_empty(&tmp));
        assert!(is_empty(&blobs));
    }

    #[tokio::test]
    async fn short_content_is_a_size_mismatch_even_if_the_digest_matches() {
        let (_dir, tmp, blobs) = dirs();
        let digest = Digest::of(b"hello");
        let mut writer = BlobWriter::create(&tmp, digest.clone(), Some(6)).unwrap();
        writer.write_all(b"hello").await.unwrap();
        let err = writer.commit(&blobs.join(digest.hex())).await.unwrap_err();
        assert!(
            matches!(err, ImageError::SizeMismatch { actual: 5, .. }),
            "{err}"
        );
        assert!(is_empty(&tmp));
    }
}
