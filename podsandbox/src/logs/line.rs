//! Splitting a byte stream into CRI log entries: full lines, and partial chunks of at most [`MAX_LINE`] bytes.
//!
//! This mirrors containerd's logger, which reads through a 16 KiB buffer: a line that does not fit is emitted as
//! `P` chunks of 16 KiB followed by the `F` remainder, and whatever is left without a newline when the stream
//! closes is emitted as `P`. A line of exactly 16 KiB stays one `F` entry: a chunk is only cut once a byte
//! beyond the limit arrives without a newline.

use super::format::Tag;

/// The largest content of one log entry, in bytes (containerd's default `max_container_log_line_size`).
pub const MAX_LINE: usize = 16 * 1024;

/// Accumulates output until a newline (or the size limit) completes an entry.
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    pub fn new() -> LineSplitter {
        LineSplitter::default()
    }

    /// Feeds `data`, calling `emit` for every entry it completes, in order.
    pub fn push(&mut self, mut data: &[u8], mut emit: impl FnMut(Tag, &[u8])) {
        loop {
            let newline = data.iter().position(|&b| b == b'\n');
            let mut segment = &data[..newline.unwrap_or(data.len())];
            while !segment.is_empty() {
                if self.pending.len() == MAX_LINE {
                    emit(Tag::Partial, &self.pending);
                    self.pending.clear();
                }
                let take = (MAX_LINE - self.pending.len()).min(segment.len());
                self.pending.extend_from_slice(&segment[..take]);
                segment = &segment[take..];
            }
            match newline {
                Some(at) => {
                    emit(Tag::Full, &self.pending);
                    self.pending.clear();
                    data = &data[at + 1..];
                }
                None => return,
            }
        }
    }

    /// Ends the stream: a trailing chunk without a newline is emitted as a partial entry.
    pub fn finish(&mut self, mut emit: impl FnMut(Tag, &[u8])) {
        if !self.pending.is_empty() {
            emit(Tag::Partial, &self.pending);
            self.pending.clear();
        }
        // Release the buffer: an exited container's sink may stay referenced for a while.
        self.pending = Vec::new();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<(Tag, Vec<u8>)> {
        let mut out = Vec::new();
        let mut s = LineSplitter::new();
        for chunk in chunks {
            s.push(chunk, |tag, content| out.push((tag, content.to_vec())));
        }
        s.finish(|tag, content| out.push((tag, content.to_vec())));
        out
    }

    #[test]
    fn full_lines_across_writes() {
        let out = split(&[b"hel", b"lo\nwor", b"ld\n\n"]);
        assert_eq!(
            out,
            vec![
                (Tag::Full, b"hello".to_vec()),
                (Tag::Full, b"world".to_vec()),
                (Tag::Full, b"".to_vec()),
            ]
        );
    }

    #[test]
    fn trailing_chunk_is_partial() {
        assert_eq!(
            split(&[b"done\nno newline"]),
            vec![
                (Tag::Full, b"done".to_vec()),
                (Tag::Partial, b"no newline".to_vec())
            ]
        );
        assert!(split(&[]).is_empty());
    }

    #[test]
    fn long_line_splits_into_partials_then_full() {
        let mut line = vec![b'a'; 2 * MAX_LINE + 10];
        line.push(b'\n');
        let out = split(&[&line[..100], &line[100..]]);
        let tags: Vec<Tag> = out.iter().map(|(t, _)| *t).collect();
        assert_eq!(tags, vec![Tag::Partial, Tag::Partial, Tag::Full]);
        assert_eq!(out[0].1.len(), MAX_LINE);
        assert_eq!(out[1].1.len(), MAX_LINE);
        assert_eq!(out[2].1.len(), 10);
    }

    #[test]
    fn line_of_exactly_the_limit_stays_full() {
        let mut line = vec![b'x'; MAX_LINE];
        line.push(b'\n');
        let out = split(&[&line]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, Tag::Full);
        assert_eq!(out[0].1.len(), MAX_LINE);
    }
}
