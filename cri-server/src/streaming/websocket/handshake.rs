//! The server half of the RFC 6455 opening handshake: the accept key and the subprotocol choice.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest, Sha1};

/// RFC 6455 section 1.3.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.trim().as_bytes());
    sha.update(ACCEPT_GUID.as_bytes());
    STANDARD.encode(sha.finalize())
}

/// Picks the first of the client's subprotocols (comma-separated, possibly over several header lines) that
/// the server supports, as the kubelet does. A client that offers none gets `""` if the server allows that.
pub fn select_protocol<'a>(
    offered: impl IntoIterator<Item = &'a str>,
    supported: &[&'static str],
) -> Option<&'static str> {
    let offered: Vec<&str> = offered
        .into_iter()
        .flat_map(|line| line.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if offered.is_empty() {
        return supported.iter().copied().find(|s| s.is_empty());
    }
    offered
        .iter()
        .find_map(|o| supported.iter().copied().find(|s| !s.is_empty() && s == o))
}

/// The `101 Switching Protocols` answer.
pub fn response(accept: &str, protocol: &str) -> String {
    let mut r = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n"
    );
    if !protocol.is_empty() {
        r.push_str(&format!("Sec-WebSocket-Protocol: {protocol}\r\n"));
    }
    r.push_str("\r\n");
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_of_the_rfc_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn protocol_is_the_clients_first_supported_one() {
        let supported = ["v5.channel.k8s.io", "v4.channel.k8s.io", ""];
        assert_eq!(
            select_protocol(["v4.channel.k8s.io, v5.channel.k8s.io"], &supported),
            Some("v4.channel.k8s.io")
        );
        assert_eq!(
            select_protocol(["base64.channel.k8s.io", "v5.channel.k8s.io"], &supported),
            Some("v5.channel.k8s.io")
        );
        assert_eq!(select_protocol(["nope"], &supported), None);
        assert_eq!(select_protocol([], &supported), Some(""));
        assert_eq!(select_protocol([], &["v5.channel.k8s.io"]), None);
    }

    #[test]
    fn response_names_the_protocol() {
        let r = response("abc", "v5.channel.k8s.io");
        assert!(r.starts_with("HTTP/1.1 101 "));
        assert!(r.contains("Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n"));
        assert!(r.ends_with("\r\n\r\n"));
        assert!(!response("abc", "").contains("Sec-WebSocket-Protocol"));
    }
}
