//! SPDY/3.1 frames: parsing from and serialising to bytes.
//!
//! ```text
//! control: |1| version(15) | type(16) |  flags(8) | length(24) | payload
//! data:    |0| stream id(31)           |  flags(8) | length(24) | payload
//! ```
//! Header blocks inside SYN_STREAM, SYN_REPLY and HEADERS go through the connection's [`Inflater`] /
//! [`Deflater`], so frames must be decoded and encoded in wire order.

use bytes::Bytes;

use super::SpdyError;
use super::headers::{Deflater, Headers, Inflater, decode_block, encode_block};

pub const VERSION: u16 = 3;
pub const FLAG_FIN: u8 = 0x01;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

/// RST_STREAM status codes used here.
pub const RST_PROTOCOL_ERROR: u32 = 1;
pub const RST_REFUSED_STREAM: u32 = 3;
pub const RST_CANCEL: u32 = 5;

/// One frame. Frames this server never acts on (SETTINGS, WINDOW_UPDATE, unknown types) are kept only as
/// markers: SPDY says to ignore what one does not understand.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    SynStream {
        stream: u32,
        associated: u32,
        priority: u8,
        flags: u8,
        headers: Headers,
    },
    SynReply {
        stream: u32,
        flags: u8,
        headers: Headers,
    },
    RstStream {
        stream: u32,
        status: u32,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good: u32,
        status: u32,
    },
    Headers {
        stream: u32,
        flags: u8,
        headers: Headers,
    },
    Data {
        stream: u32,
        flags: u8,
        data: Bytes,
    },
    Settings,
    WindowUpdate {
        stream: u32,
        delta: u32,
    },
    Unknown {
        kind: u16,
    },
}

/// Parses the frame at the start of `buf`; `Ok(None)` when `buf` does not hold a whole frame yet.
/// On success returns the frame and the number of bytes it took.
pub fn decode(buf: &[u8], inflater: &mut Inflater) -> Result<Option<(Frame, usize)>, SpdyError> {
    let Some(head) = buf.first_chunk::<8>() else {
        return Ok(None);
    };
    let word = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let flags = head[4];
    let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
    let Some(payload) = buf.get(8..8 + len) else {
        return Ok(None);
    };
    let total = 8 + len;
    if word & 0x8000_0000 == 0 {
        let frame = Frame::Data {
            stream: word & 0x7fff_ffff,
            flags,
            data: Bytes::copy_from_slice(payload),
        };
        return Ok(Some((frame, total)));
    }
    let version = ((word >> 16) & 0x7fff) as u16;
    if version != VERSION {
        return Err(SpdyError::Version(version));
    }
    let kind = (word & 0xffff) as u16;
    let frame = match kind {
        TYPE_SYN_STREAM => {
            let [s0, s1, s2, s3, a0, a1, a2, a3, prio, _slot] = fixed(payload, "SYN_STREAM")?;
            Frame::SynStream {
                stream: u32::from_be_bytes([s0, s1, s2, s3]) & 0x7fff_ffff,
                associated: u32::from_be_bytes([a0, a1, a2, a3]) & 0x7fff_ffff,
                priority: prio >> 5,
                flags,
                headers: decode_block(&inflater.inflate(&payload[10..])?)?,
            }
        }
        TYPE_SYN_REPLY | TYPE_HEADERS => {
            let [s0, s1, s2, s3] = fixed(payload, "SYN_REPLY/HEADERS")?;
            let stream = u32::from_be_bytes([s0, s1, s2, s3]) & 0x7fff_ffff;
            let headers = decode_block(&inflater.inflate(&payload[4..])?)?;
            if kind == TYPE_SYN_REPLY {
                Frame::SynReply {
                    stream,
                    flags,
                    headers,
                }
            } else {
                Frame::Headers {
                    stream,
                    flags,
                    headers,
                }
            }
        }
        TYPE_RST_STREAM => {
            let [s0, s1, s2, s3, t0, t1, t2, t3] = fixed(payload, "RST_STREAM")?;
            Frame::RstStream {
                stream: u32::from_be_bytes([s0, s1, s2, s3]) & 0x7fff_ffff,
                status: u32::from_be_bytes([t0, t1, t2, t3]),
            }
        }
        TYPE_PING => {
            let [i0, i1, i2, i3] = fixed(payload, "PING")?;
            Frame::Ping {
                id: u32::from_be_bytes([i0, i1, i2, i3]),
            }
        }
        TYPE_GOAWAY => {
            let [l0, l1, l2, l3, t0, t1, t2, t3] = fixed(payload, "GOAWAY")?;
            Frame::GoAway {
                last_good: u32::from_be_bytes([l0, l1, l2, l3]) & 0x7fff_ffff,
                status: u32::from_be_bytes([t0, t1, t2, t3]),
            }
        }
        TYPE_WINDOW_UPDATE => {
            let [s0, s1, s2, s3, d0, d1, d2, d3] = fixed(payload, "WINDOW_UPDATE")?;
            Frame::WindowUpdate {
                stream: u32::from_be_bytes([s0, s1, s2, s3]) & 0x7fff_ffff,
                delta: u32::from_be_bytes([d0, d1, d2, d3]) & 0x7fff_ffff,
            }
        }
        TYPE_SETTINGS => Frame::Settings,
        other => Frame::Unknown { kind: other },
    };
    Ok(Some((frame, total)))
}

/// The first `N` bytes of a control frame's payload.
fn fixed<const N: usize>(payload: &[u8], frame: &'static str) -> Result<[u8; N], SpdyError> {
    payload
        .first_chunk::<N>()
        .copied()
        .ok_or(SpdyError::Malformed { frame })
}

/// Appends the frame's bytes to `out`. SETTINGS, WINDOW_UPDATE and unknown frames are never sent by this
/// server and encode to nothing.
pub fn encode(frame: &Frame, deflater: &mut Deflater, out: &mut Vec<u8>) {
    match frame {
        Frame::Data {
            stream,
            flags,
            data,
        } => {
            out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
            push_flags_len(out, *flags, data.len());
            out.extend_from_slice(data);
        }
        Frame::SynStream {
            stream,
            associated,
            priority,
            flags,
            headers,
        } => {
            let block = deflater.deflate(&encode_block(headers));
            control(out, TYPE_SYN_STREAM, *flags, 10 + block.len());
            out.extend_from_slice(&stream.to_be_bytes());
            out.extend_from_slice(&associated.to_be_bytes());
            out.extend_from_slice(&[priority << 5, 0]);
            out.extend_from_slice(&block);
        }
        Frame::SynReply {
            stream,
            flags,
            headers,
        }
        | Frame::Headers {
            stream,
            flags,
            headers,
        } => {
            let kind = if matches!(frame, Frame::SynReply { .. }) {
                TYPE_SYN_REPLY
            } else {
                TYPE_HEADERS
            };
            let block = deflater.deflate(&encode_block(headers));
            control(out, kind, *flags, 4 + block.len());
            out.extend_from_slice(&stream.to_be_bytes());
            out.extend_from_slice(&block);
        }
        Frame::RstStream { stream, status } => {
            control(out, TYPE_RST_STREAM, 0, 8);
            out.extend_from_slice(&stream.to_be_bytes());
            out.extend_from_slice(&status.to_be_bytes());
        }
        Frame::Ping { id } => {
            control(out, TYPE_PING, 0, 4);
            out.extend_from_slice(&id.to_be_bytes());
        }
        Frame::GoAway { last_good, status } => {
            control(out, TYPE_GOAWAY, 0, 8);
            out.extend_from_slice(&last_good.to_be_bytes());
            out.extend_from_slice(&status.to_be_bytes());
        }
        Frame::Settings | Frame::WindowUpdate { .. } | Frame::Unknown { .. } => {}
    }
}

fn control(out: &mut Vec<u8>, kind: u16, flags: u8, len: usize) {
    out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    push_flags_len(out, flags, len);
}

/// Frame lengths are 24 bits; callers keep payloads far below 16 MiB (data is sent in 32 KiB pieces).
fn push_flags_len(out: &mut Vec<u8>, flags: u8, len: usize) {
    let len = u32::try_from(len).unwrap_or(u32::MAX).min(0x00ff_ffff);
    out.extend_from_slice(&((u32::from(flags) << 24) | len).to_be_bytes());
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::streaming::spdy::headers::tests::hex;

    fn round_trip(frame: Frame) {
        let mut out = Vec::new();
        encode(&frame, &mut Deflater::new(), &mut out);
        let (back, used) = decode(&out, &mut Inflater::new()).unwrap().unwrap();
        assert_eq!(back, frame);
        assert_eq!(used, out.len());
        // A prefix is "not yet".
        assert!(
            decode(&out[..out.len() - 1], &mut Inflater::new())
                .unwrap()
                .is_none()
        );
    }

    fn h(pairs: &[(&str, &str)]) -> Headers {
        let mut h = Headers::new();
        for (n, v) in pairs {
            h.push(n, v);
        }
        h
    }

    #[test]
    fn frames_round_trip() {
        round_trip(Frame::Data {
            stream: 7,
            flags: FLAG_FIN,
            data: Bytes::from_static(b"hello"),
        });
        round_trip(Frame::SynStream {
            stream: 1,
            associated: 0,
            priority: 0,
            flags: 0,
            headers: h(&[("streamtype", "error")]),
        });
        round_trip(Frame::SynReply {
            stream: 3,
            flags: 0,
            headers: Headers::new(),
        });
        round_trip(Frame::Headers {
            stream: 3,
            flags: FLAG_FIN,
            headers: h(&[("a", "b")]),
        });
        round_trip(Frame::RstStream {
            stream: 5,
            status: RST_CANCEL,
        });
        round_trip(Frame::Ping { id: 1 });
        round_trip(Frame::GoAway {
            last_good: 9,
            status: 0,
        });
    }

    #[test]
    fn decodes_syn_streams_as_spdystream_writes_them() {
        // Three SYN_STREAM frames written in a row by moby/spdystream's Framer (Go, one zlib stream with the
        // SPDY dictionary): the second and third blocks depend on the compressor state left by the first.
        let wire = hex(concat!(
            "80030001000000290000000100000000000078f9e3c6a7c26260606004a7b392a2d4c45c6851c29a0a0a",
            "6800000000ffff",
            "800300010000001900000003000000000000c22ac5565c92925f5a02000000ffff",
            "800300010100002e0000000500000000000002a55548b15d04ce2116061606186a41251228c3701641223f",
            "139429180d00000000ffff",
        ));
        let mut inflater = Inflater::new();
        let mut at = 0;
        let mut frames = Vec::new();
        while at < wire.len() {
            let (f, used) = decode(&wire[at..], &mut inflater).unwrap().unwrap();
            frames.push(f);
            at += used;
        }
        assert_eq!(frames.len(), 3);
        let Frame::SynStream {
            stream, headers, ..
        } = &frames[0]
        else {
            panic!("{:?}", frames[0])
        };
        assert_eq!((*stream, headers.get("streamtype")), (1, Some("error")));
        let Frame::SynStream {
            stream, headers, ..
        } = &frames[1]
        else {
            panic!("{:?}", frames[1])
        };
        assert_eq!((*stream, headers.get("streamtype")), (3, Some("stdout")));
        let Frame::SynStream {
            stream,
            flags,
            headers,
            ..
        } = &frames[2]
        else {
            panic!("{:?}", frames[2])
        };
        assert_eq!((*stream, *flags), (5, FLAG_FIN));
        assert_eq!(headers.get("port"), Some("8080"));
        assert_eq!(headers.get("streamtype"), Some("data"));
        assert_eq!(headers.get("requestid"), Some("0"));
    }

    #[test]
    fn other_versions_are_refused() {
        let mut out = Vec::new();
        encode(&Frame::Ping { id: 1 }, &mut Deflater::new(), &mut out);
        out[1] = 2;
        assert!(matches!(
            decode(&out, &mut Inflater::new()),
            Err(SpdyError::Version(2))
        ));
    }

    #[test]
    fn short_control_frame_is_malformed() {
        // A PING with a 2-byte payload.
        let wire = [0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x02, 0, 1];
        assert!(matches!(
            decode(&wire, &mut Inflater::new()),
            Err(SpdyError::Malformed { .. })
        ));
    }
}
