//! Rendering one CRI log line: `<timestamp> <stream> <tag> <content>\n`.
//!
//! The timestamp is what containerd writes (Go's `time.RFC3339Nano` padded to nine digits, in UTC), e.g.
//! `2026-11-22T06:40:01.123456789Z`; the kubelet parses it with `time.RFC3339Nano`.

use chrono::{DateTime, Utc};

use super::Stream;

/// Whether a log line holds a whole line of output or a chunk of a longer one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tag {
    /// A full line; the content excludes its `\n`.
    Full,
    /// A partial chunk: more of the same line follows in later entries (or the stream ended without `\n`).
    Partial,
}

impl Tag {
    fn as_str(self) -> &'static str {
        match self {
            Tag::Full => "F",
            Tag::Partial => "P",
        }
    }
}

/// Formats `time` as RFC 3339 in UTC with exactly nine fractional digits.
pub fn timestamp(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

/// Renders one complete log line, ending in `\n`, ready for a single write.
pub fn render(time: DateTime<Utc>, stream: Stream, tag: Tag, content: &[u8]) -> Vec<u8> {
    let ts = timestamp(time);
    let stream = stream.as_str();
    let mut line = Vec::with_capacity(ts.len() + stream.len() + content.len() + 6);
    line.extend_from_slice(ts.as_bytes());
    line.push(b' ');
    line.extend_from_slice(stream.as_bytes());
    line.push(b' ');
    line.extend_from_slice(tag.as_str().as_bytes());
    line.push(b' ');
    line.extend_from_slice(content);
    line.push(b'\n');
    line
}

/// Splits one CRI log line (without its `\n`) into (timestamp, stream, tag, content), without a regex.
#[cfg(test)]
pub(crate) fn parse_line(line: &str) -> Option<(&str, &str, &str, &str)> {
    let (ts, rest) = line.split_once(' ')?;
    let (stream, rest) = rest.split_once(' ')?;
    let (tag, content) = rest.split_once(' ')?;
    Some((ts, stream, tag, content))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn timestamp_has_nine_fractional_digits_in_utc() {
        let t = Utc.with_ymd_and_hms(2026, 11, 22, 6, 40, 1).unwrap()
            + chrono::Duration::nanoseconds(123_456_789);
        assert_eq!(timestamp(t), "2026-11-22T06:40:01.123456789Z");
        let whole = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        assert_eq!(timestamp(whole), "2026-01-02T03:04:05.000000000Z");
    }

    #[test]
    fn renders_a_golden_line() {
        let t = Utc.with_ymd_and_hms(2026, 11, 22, 6, 40, 1).unwrap()
            + chrono::Duration::nanoseconds(5);
        assert_eq!(
            render(t, Stream::Stderr, Tag::Partial, b"abc"),
            b"2026-11-22T06:40:01.000000005Z stderr P abc\n"
        );
        assert_eq!(
            render(t, Stream::Stdout, Tag::Full, b""),
            b"2026-11-22T06:40:01.000000005Z stdout F \n"
        );
    }
}
