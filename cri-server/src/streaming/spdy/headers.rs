//! SPDY/3 name/value header blocks and their compression.
//!
//! A block is `u32 count` then `count` × (`u32 len`, name, `u32 len`, value), big-endian, names lowercase,
//! several values of one name joined by NUL. Each direction of a connection compresses all its blocks as one
//! zlib stream primed with the SPDY dictionary, flushed (SYNC_FLUSH) at the end of every block.
//!
//! - [`Inflater`] reads the peer's stream. miniz_oxide has no "set dictionary" call, but its inflater can work
//!   in a 32 KiB wrapping window, which is exactly the history a preset dictionary stands for: the dictionary is
//!   placed at the end of the window before the first byte, where back-references reach it.
//! - [`Deflater`] writes ours as *stored* deflate blocks. The only blocks the server sends are the empty
//!   header sets of SYN_REPLY frames; compressing four bytes would gain nothing, and stored blocks are valid
//!   in any zlib stream whatever the dictionary.

use miniz_oxide::inflate::TINFLStatus;
use miniz_oxide::inflate::core::inflate_flags::TINFL_FLAG_HAS_MORE_INPUT;
use miniz_oxide::inflate::core::{DecompressorOxide, decompress};

use super::SpdyError;
use super::dictionary::{DICTIONARY, dictionary_id};

/// Limits on what a peer may make us allocate for one header block.
const MAX_BLOCK: usize = 1 << 20;
const MAX_HEADERS: u32 = 1000;
const WINDOW: usize = 32 * 1024;

/// Header name/value pairs in arrival order; names are lowercase.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    pub fn new() -> Headers {
        Headers::default()
    }

    /// Adds a value (`name` is lowercased, as SPDY requires).
    pub fn push(&mut self, name: &str, value: &str) {
        self.0.push((name.to_ascii_lowercase(), value.to_string()));
    }

    /// The first value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Serialises a block (uncompressed). Values of a repeated name are joined with NUL, as SPDY requires.
pub fn encode_block(headers: &Headers) -> Vec<u8> {
    let mut names: Vec<&str> = Vec::new();
    for (n, _) in &headers.0 {
        if !names.contains(&n.as_str()) {
            names.push(n);
        }
    }
    let mut out = Vec::new();
    push_len(&mut out, names.len());
    for name in names {
        let value = headers
            .0
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
            .join("\0");
        push_len(&mut out, name.len());
        out.extend_from_slice(name.as_bytes());
        push_len(&mut out, value.len());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

fn push_len(out: &mut Vec<u8>, len: usize) {
    // Header blocks we build are tiny; anything near 4 GiB would already have failed to allocate.
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
}

/// Parses an uncompressed block. Names are lowercased (spdystream does the same and only warns).
pub fn decode_block(mut b: &[u8]) -> Result<Headers, SpdyError> {
    let count = take_u32(&mut b)?;
    if count > MAX_HEADERS {
        return Err(SpdyError::HeaderBlock("too many headers"));
    }
    let mut headers = Headers::new();
    for _ in 0..count {
        let name = take_string(&mut b)?;
        let value = take_string(&mut b)?;
        for v in value.split('\0') {
            headers.push(&name, v);
        }
    }
    Ok(headers)
}

fn take_u32(b: &mut &[u8]) -> Result<u32, SpdyError> {
    let Some((head, rest)) = b.split_first_chunk::<4>() else {
        return Err(SpdyError::HeaderBlock("truncated"));
    };
    *b = rest;
    Ok(u32::from_be_bytes(*head))
}

fn take_string(b: &mut &[u8]) -> Result<String, SpdyError> {
    let len = take_u32(b)? as usize;
    if len > b.len() {
        return Err(SpdyError::HeaderBlock("truncated"));
    }
    let (s, rest) = b.split_at(len);
    *b = rest;
    String::from_utf8(s.to_vec()).map_err(|_| SpdyError::HeaderBlock("not UTF-8"))
}

/// Where the inflater is in the 2- or 6-byte zlib header that opens the stream.
enum ZlibHeader {
    Pending(Vec<u8>),
    Done,
}

/// Decompresses the peer's header blocks, one connection direction's zlib stream.
pub struct Inflater {
    state: Box<DecompressorOxide>,
    /// The wrapping history window; starts with the dictionary in its last bytes.
    window: Box<[u8]>,
    pos: usize,
    header: ZlibHeader,
}

impl Default for Inflater {
    fn default() -> Self {
        Inflater::new()
    }
}

impl Inflater {
    pub fn new() -> Inflater {
        let mut window = vec![0u8; WINDOW].into_boxed_slice();
        let dict = DICTIONARY.as_slice();
        window[WINDOW - dict.len()..].copy_from_slice(dict);
        Inflater {
            state: Box::default(),
            window,
            pos: 0,
            header: ZlibHeader::Pending(Vec::new()),
        }
    }

    /// Decompresses one header block's bytes (the next piece of the stream).
    pub fn inflate(&mut self, mut input: &[u8]) -> Result<Vec<u8>, SpdyError> {
        input = self.skip_zlib_header(input)?;
        let mut out = Vec::new();
        loop {
            let (status, consumed, produced) = decompress(
                &mut self.state,
                input,
                &mut self.window,
                self.pos,
                TINFL_FLAG_HAS_MORE_INPUT,
            );
            out.extend_from_slice(&self.window[self.pos..self.pos + produced]);
            if out.len() > MAX_BLOCK {
                return Err(SpdyError::HeaderBlock("larger than 1 MiB"));
            }
            self.pos = (self.pos + produced) % WINDOW;
            input = &input[consumed..];
            match status {
                TINFLStatus::HasMoreOutput => continue,
                TINFLStatus::NeedsMoreInput | TINFLStatus::Done if input.is_empty() => {
                    return Ok(out);
                }
                TINFLStatus::NeedsMoreInput if consumed > 0 || produced > 0 => continue,
                _ => return Err(SpdyError::HeaderBlock("invalid compressed data")),
            }
        }
    }

    /// Consumes the zlib header (CMF, FLG and, with FDICT, the dictionary id) from the front of the stream.
    fn skip_zlib_header<'a>(&mut self, input: &'a [u8]) -> Result<&'a [u8], SpdyError> {
        let ZlibHeader::Pending(seen) = &mut self.header else {
            return Ok(input);
        };
        let mut input = input;
        while !input.is_empty() {
            let want = if seen.len() >= 2 && seen[1] & 0x20 != 0 {
                6
            } else {
                2
            };
            if seen.len() >= want {
                break;
            }
            seen.push(input[0]);
            input = &input[1..];
        }
        if seen.len() < 2 {
            return Ok(input);
        }
        let (cmf, flg) = (seen[0], seen[1]);
        if cmf & 0x0f != 8 || (u16::from(cmf) << 8 | u16::from(flg)) % 31 != 0 {
            return Err(SpdyError::HeaderBlock("not a zlib stream"));
        }
        if flg & 0x20 != 0 {
            if seen.len() < 6 {
                return Ok(input);
            }
            let id = u32::from_be_bytes([seen[2], seen[3], seen[4], seen[5]]);
            if id != dictionary_id() {
                return Err(SpdyError::HeaderBlock(
                    "compressed with a dictionary other than SPDY/3's",
                ));
            }
        }
        self.header = ZlibHeader::Done;
        Ok(input)
    }
}

/// Compresses our header blocks (see the module comment for why as stored blocks).
#[derive(Default)]
pub struct Deflater {
    started: bool,
}

impl Deflater {
    pub fn new() -> Deflater {
        Deflater::default()
    }

    /// The next piece of our zlib stream, carrying `block` and ending exactly like a SYNC_FLUSH.
    pub fn deflate(&mut self, block: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(block.len() + 16);
        if !self.started {
            // CMF 0x78: deflate, 32 KiB window. FLG 0x20: FDICT set, and 0x7820 is a multiple of 31 as
            // the FCHECK rule wants. Then the id of the dictionary the reader must preset.
            out.extend_from_slice(&[0x78, 0x20]);
            out.extend_from_slice(&dictionary_id().to_be_bytes());
            self.started = true;
        }
        for chunk in block.chunks(usize::from(u16::MAX)) {
            push_stored(&mut out, chunk);
        }
        // The empty stored block a SYNC_FLUSH ends with. Go's inflater hands out a stored block's bytes only
        // when it reaches the next block header, so without this marker it would read past the end of the
        // frame, fail, and stay failed for every later header block of the connection.
        push_stored(&mut out, &[]);
        out
    }
}

/// A non-final stored block: header bits BFINAL=0 BTYPE=00 padded to a byte, LEN, NLEN, data.
fn push_stored(out: &mut Vec<u8>, chunk: &[u8]) {
    // chunk.len() <= u16::MAX by construction.
    let len = chunk.len() as u16;
    out.push(0);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(chunk);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        let mut h = Headers::new();
        for (n, v) in pairs {
            h.push(n, v);
        }
        h
    }

    #[test]
    fn block_round_trip_joins_repeated_names() {
        let h = headers(&[("StreamType", "stdout"), ("x", "a"), ("x", "b")]);
        let b = encode_block(&h);
        let back = decode_block(&b).unwrap();
        assert_eq!(
            back,
            headers(&[("streamtype", "stdout"), ("x", "a"), ("x", "b")])
        );
        assert_eq!(back.get("StreamType"), Some("stdout"));
    }

    #[test]
    fn truncated_block_is_an_error() {
        let b = encode_block(&headers(&[("port", "80")]));
        assert!(decode_block(&b[..b.len() - 1]).is_err());
        assert!(decode_block(&[0, 0]).is_err());
    }

    #[test]
    fn deflate_then_inflate_round_trips_across_blocks() {
        let mut d = Deflater::new();
        let mut i = Inflater::new();
        for h in [
            headers(&[]),
            headers(&[("streamtype", "error")]),
            headers(&[("port", "8080"), ("streamtype", "data"), ("requestid", "0")]),
        ] {
            let block = encode_block(&h);
            let wire = d.deflate(&block);
            assert_eq!(i.inflate(&wire).unwrap(), block);
        }
    }

    #[test]
    fn every_block_ends_with_the_sync_flush_marker() {
        let mut d = Deflater::new();
        let first = d.deflate(&encode_block(&Headers::new()));
        assert_eq!(first, hex("7820e3c6a7c2000400fbff00000000000000ffff"));
        let second = d.deflate(b"ab");
        assert_eq!(second, hex("000200fdff6162000000ffff"));
    }

    #[test]
    fn large_block_spans_several_stored_blocks() {
        let big = "v".repeat(70_000);
        let block = encode_block(&headers(&[("big", &big)]));
        let mut d = Deflater::new();
        let wire = d.deflate(&block);
        assert_eq!(Inflater::new().inflate(&wire).unwrap(), block);
    }

    #[test]
    fn inflates_go_zlib_output_that_uses_the_dictionary() {
        // Go's zlib.NewWriterLevelDict(BestCompression, SPDY dictionary) compressing the block
        // {"streamtype": "error"}, then Flush(); the match for "streamtype"/"error" refers into the dictionary.
        let wire = hex("78f9e3c6a7c26260606004a7b392a2d4c45c6851c29a0a0a6800000000ffff");
        let block = Inflater::new().inflate(&wire).unwrap();
        assert_eq!(
            decode_block(&block).unwrap(),
            headers(&[("streamtype", "error")])
        );
    }

    #[test]
    fn foreign_dictionary_is_rejected() {
        let mut wire = hex("78f9e3c6a7c26260606004a7b392a2d4c45c6851c29a0a0a6800000000ffff");
        wire[5] ^= 1;
        assert!(Inflater::new().inflate(&wire).is_err());
    }

    pub(crate) fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}
