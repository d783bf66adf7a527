//! RFC 6455 frames as a server sees them: client frames must be masked, server frames are not.
//!
//! ```text
//! FIN RSV1-3 opcode(4) | MASK len(7) | [len 16 or 64 bits] | [mask key 32 bits] | payload
//! ```
//! No extension is ever negotiated, so RSV bits must be zero.

use super::WsError;

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// One frame, payload already unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }
}

/// Parses the client frame at the start of `buf`; `Ok(None)` until `buf` holds all of it. Returns the frame
/// and the bytes it took. Frames with more than `max_payload` bytes are refused.
pub fn decode(buf: &[u8], max_payload: usize) -> Result<Option<(Frame, usize)>, WsError> {
    let [b0, b1] = match buf.first_chunk::<2>() {
        Some(h) => *h,
        None => return Ok(None),
    };
    if b0 & 0x70 != 0 {
        return Err(WsError::Protocol("reserved bits set"));
    }
    if b1 & 0x80 == 0 {
        return Err(WsError::Protocol("client frames must be masked"));
    }
    let opcode = b0 & 0x0f;
    let fin = b0 & 0x80 != 0;
    let (len, mut at) = match b1 & 0x7f {
        126 => match buf.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
            Some(b) => (u64::from_be_bytes(b), 10),
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    if opcode & 0x8 != 0 && (len > 125 || !fin) {
        return Err(WsError::Protocol(
            "control frames must be short and unfragmented",
        ));
    }
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > max_payload {
        return Err(WsError::TooLarge);
    }
    let Some(key) = buf.get(at..at + 4) else {
        return Ok(None);
    };
    let key = [key[0], key[1], key[2], key[3]];
    at += 4;
    let Some(masked) = buf.get(at..at + len) else {
        return Ok(None);
    };
    let payload = masked
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ key[i % 4])
        .collect();
    Ok(Some((
        Frame {
            fin,
            opcode,
            payload,
        },
        at + len,
    )))
}

/// Appends an unmasked, final frame to `out`.
pub fn encode(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

/// Masks a frame as a client would (tests only: a server never masks).
#[cfg(test)]
pub fn encode_masked(opcode: u8, fin: bool, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut out = Vec::new();
    encode(opcode, payload, &mut out);
    if !fin {
        out[0] &= 0x7f;
    }
    out[1] |= 0x80;
    let header = out.len() - payload.len();
    let mut masked = out[..header].to_vec();
    masked.extend_from_slice(&key);
    masked.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    masked
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_rfc_masked_hello() {
        // RFC 6455 section 5.7: a single-frame masked text message "Hello".
        let wire = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let (f, used) = decode(&wire, 1024).unwrap().unwrap();
        assert_eq!(used, wire.len());
        assert_eq!(
            f,
            Frame {
                fin: true,
                opcode: OP_TEXT,
                payload: b"Hello".to_vec()
            }
        );
        assert!(decode(&wire[..wire.len() - 1], 1024).unwrap().is_none());
    }

    #[test]
    fn encodes_the_rfc_unmasked_hello() {
        let mut out = Vec::new();
        encode(OP_TEXT, b"Hello", &mut out);
        assert_eq!(out, [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    }

    #[test]
    fn lengths_of_every_size_class_round_trip() {
        for len in [0, 125, 126, 65535, 65536, 70000] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let wire = encode_masked(OP_BINARY, true, &payload, [1, 2, 3, 4]);
            let (f, used) = decode(&wire, 1 << 20).unwrap().unwrap();
            assert_eq!((f.payload.len(), used), (len, wire.len()));
            assert_eq!(f.payload, payload);
        }
    }

    #[test]
    fn unmasked_and_oversized_frames_are_refused() {
        let mut plain = Vec::new();
        encode(OP_BINARY, b"x", &mut plain);
        assert!(decode(&plain, 1024).is_err());
        let big = encode_masked(OP_BINARY, true, &[0; 200], [0; 4]);
        assert!(matches!(decode(&big, 100), Err(WsError::TooLarge)));
        let ping = encode_masked(OP_PING, true, &[0; 126], [0; 4]);
        assert!(decode(&ping, 1024).is_err());
    }
}
