//! The HTTP/1.1 side of the streaming server: accept connections, read one request head, find the request
//! its one-time token stands for, and switch the connection to SPDY or WebSocket. The server only ever
//! answers upgrade requests, so a request head and a handful of fixed responses are all the HTTP it needs.

use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{Instrument, debug, info_span, warn};

use super::backend::StreamBackend;
use super::tokens::{StreamRequest, TokenCache};
use super::websocket::handshake;
use super::{ConnRead, ConnWrite, portforward, remotecommand};

/// A client must send its request head within this time.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;

/// Serves streaming requests on `listener` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    tokens: Arc<TokenCache>,
    backend: Arc<dyn StreamBackend>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let span = info_span!("stream", %peer);
                tokio::spawn(
                    handle(stream, Arc::clone(&tokens), Arc::clone(&backend)).instrument(span),
                );
            }
            Err(err) => {
                // Out of file descriptors and the like: wait a little instead of spinning.
                warn!(error = %err, "accepting a streaming connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn handle(stream: TcpStream, tokens: Arc<TokenCache>, backend: Arc<dyn StreamBackend>) {
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let (head, leftover, read) = match tokio::time::timeout(HEAD_TIMEOUT, read_head(read)).await {
        Ok(Ok(parts)) => parts,
        Ok(Err(why)) => {
            debug!(why, "bad streaming request head");
            let mut conn = HttpConn {
                read: Box::new(tokio::io::empty()),
                write: Box::new(write),
            };
            conn.respond(400, "Bad Request", &[], why).await;
            return;
        }
        Err(_) => {
            debug!("streaming client sent no request in time");
            return;
        }
    };
    let conn = HttpConn {
        read: Box::new(Cursor::new(leftover).chain(read)),
        write: Box::new(write),
    };
    let Some(request) = route(&head, &tokens) else {
        debug!(path = %head.path, "no streaming request for this URL");
        conn.refuse(Refusal::new(404, "Not Found", "404 page not found"))
            .await;
        return;
    };
    match request {
        StreamRequest::Exec(r) => remotecommand::serve_exec(conn, &head, r, backend).await,
        StreamRequest::Attach(r) => remotecommand::serve_attach(conn, &head, r, backend).await,
        StreamRequest::PortForward(r) => portforward::serve(conn, &head, r, backend).await,
    }
}

/// `/exec/<token>`, `/attach/<token>` or `/portforward/<token>` (GET or POST) → the request stored under the
/// token, which is used up even if the path's kind does not match.
fn route(head: &RequestHead, tokens: &TokenCache) -> Option<StreamRequest> {
    if head.method != "GET" && head.method != "POST" {
        return None;
    }
    let mut parts = head.path.strip_prefix('/')?.split('/');
    let (kind, token) = (parts.next()?, parts.next()?);
    if parts.next().is_some() || token.is_empty() {
        return None;
    }
    let request = tokens.consume(token)?;
    (request.kind() == kind).then_some(request)
}

/// A parsed request line and headers.
#[derive(Debug, Clone, Default)]
pub struct RequestHead {
    pub method: String,
    pub path: String,
    pub query: String,
    /// Names lowercased.
    pub headers: Vec<(String, String)>,
}

impl RequestHead {
    /// Every value of header `name` (lowercase).
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn header<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        self.values(name).next()
    }

    /// Every value of query parameter `key` (no percent-decoding: the values used here are numbers).
    pub fn query_values(&self, key: &str) -> Vec<&str> {
        self.query
            .split('&')
            .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v)
            .collect()
    }

    fn connection_upgrade(&self) -> bool {
        self.values("connection")
            .any(|v| v.to_ascii_lowercase().contains("upgrade"))
    }

    pub fn is_websocket(&self) -> bool {
        self.connection_upgrade()
            && self
                .header("upgrade")
                .is_some_and(|u| u.trim().eq_ignore_ascii_case("websocket"))
    }

    pub fn is_spdy(&self) -> bool {
        self.connection_upgrade()
            && self
                .header("upgrade")
                .is_some_and(|u| u.to_ascii_lowercase().contains("spdy/3.1"))
    }
}

/// Reads until the end of the request head; returns it, the bytes read past it, and the reader.
async fn read_head<R: tokio::io::AsyncRead + Unpin>(
    mut read: R,
) -> Result<(RequestHead, Vec<u8>, R), &'static str> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        if let Some((head, used)) = parse_head(&buf)? {
            let leftover = buf.split_off(used);
            return Ok((head, leftover, read));
        }
        if buf.len() >= MAX_HEAD {
            return Err("request head too large");
        }
        let mut chunk = [0u8; 2048];
        let n = read
            .read(&mut chunk)
            .await
            .map_err(|_| "connection failed")?;
        if n == 0 {
            return Err("connection closed before the end of the request head");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// `Ok(None)` while the head is incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<(RequestHead, usize)>, &'static str> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let used = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err("malformed request head"),
    };
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let head = RequestHead {
        method: req.method.unwrap_or("").to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers: req
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).trim().to_string(),
                )
            })
            .collect(),
    };
    Ok(Some((head, used)))
}

/// How a connection was switched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// SPDY/3.1 with this `X-Stream-Protocol-Version`.
    Spdy(&'static str),
    /// WebSocket with this subprotocol (`""`: the client asked for none).
    WebSocket(&'static str),
}

/// An error answer instead of an upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub reason: &'static str,
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
}

impl Refusal {
    pub fn new(status: u16, reason: &'static str, body: impl Into<String>) -> Refusal {
        Refusal {
            status,
            reason,
            body: body.into(),
            headers: Vec::new(),
        }
    }
}

/// Picks the transport and protocol, preferring the client's order as the kubelet does.
pub fn choose(
    head: &RequestHead,
    spdy: &[&'static str],
    ws: &[&'static str],
) -> Result<Transport, Refusal> {
    if head.is_websocket() {
        if head.header("sec-websocket-version") != Some("13") {
            let mut r = Refusal::new(400, "Bad Request", "unsupported websocket version");
            r.headers.push(("Sec-WebSocket-Version", "13".into()));
            return Err(r);
        }
        if head.header("sec-websocket-key").is_none_or(str::is_empty) {
            return Err(Refusal::new(
                400,
                "Bad Request",
                "missing Sec-WebSocket-Key",
            ));
        }
        return handshake::select_protocol(head.values("sec-websocket-protocol"), ws)
            .map(Transport::WebSocket)
            .ok_or_else(|| {
                Refusal::new(
                    400,
                    "Bad Request",
                    format!("requested protocol(s) are not supported; supports {ws:?}"),
                )
            });
    }
    if !head.is_spdy() {
        return Err(Refusal::new(
            400,
            "Bad Request",
            "unable to upgrade: missing upgrade headers in request",
        ));
    }
    let offered: Vec<&str> = head
        .values("x-stream-protocol-version")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if offered.is_empty() {
        return Err(Refusal::new(
            400,
            "Bad Request",
            "unable to upgrade: header X-Stream-Protocol-Version does not exist or is empty",
        ));
    }
    if let Some(p) = offered
        .iter()
        .find_map(|o| spdy.iter().copied().find(|s| s == o))
    {
        return Ok(Transport::Spdy(p));
    }
    let mut r = Refusal::new(
        403,
        "Forbidden",
        format!(
            "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server accepts {spdy:?}"
        ),
    );
    for p in spdy {
        r.headers
            .push(("X-Accepted-Stream-Protocol-Versions", (*p).to_string()));
    }
    Err(r)
}

/// A connection whose request head has been read.
pub struct HttpConn {
    read: ConnRead,
    write: ConnWrite,
}

impl HttpConn {
    /// Answers 101 for `transport` and hands over the raw connection.
    pub async fn accept(
        mut self,
        head: &RequestHead,
        transport: Transport,
    ) -> std::io::Result<(ConnRead, ConnWrite)> {
        let response = match transport {
            Transport::Spdy(protocol) => format!(
                "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: {protocol}\r\n\r\n"
            ),
            Transport::WebSocket(protocol) => handshake::response(
                &handshake::accept_key(head.header("sec-websocket-key").unwrap_or("")),
                protocol,
            ),
        };
        self.write.write_all(response.as_bytes()).await?;
        self.write.flush().await?;
        Ok((self.read, self.write))
    }

    /// Answers with an error and closes the connection.
    pub async fn refuse(mut self, refusal: Refusal) {
        let extra: Vec<(&str, &str)> = refusal
            .headers
            .iter()
            .map(|(n, v)| (*n, v.as_str()))
            .collect();
        self.respond(refusal.status, refusal.reason, &extra, &refusal.body)
            .await;
    }

    async fn respond(&mut self, status: u16, reason: &str, extra: &[(&str, &str)], body: &str) {
        let mut r = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len() + 1
        );
        for (n, v) in extra {
            r.push_str(&format!("{n}: {v}\r\n"));
        }
        r.push_str("\r\n");
        r.push_str(body);
        r.push('\n');
        let _ = self.write.write_all(r.as_bytes()).await;
        let _ = self.write.shutdown().await;
        // Let the client read the answer before the socket goes away (see `spdy::Session::close`).
        let mut sink = [0u8; 1024];
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while matches!(self.read.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn head(text: &str) -> RequestHead {
        parse_head(text.as_bytes()).unwrap().unwrap().0
    }

    const SPDY: [&str; 2] = ["v4.channel.k8s.io", "channel.k8s.io"];
    const WS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

    #[test]
    fn parses_request_line_query_and_headers() {
        let text = "POST /exec/abc?port=80&port=81,82 HTTP/1.1\r\nHost: x\r\nX-Stream-Protocol-Version: a\r\nX-Stream-Protocol-Version: b\r\n\r\nrest";
        let (h, used) = parse_head(text.as_bytes()).unwrap().unwrap();
        assert_eq!(&text[used..], "rest");
        assert_eq!((h.method.as_str(), h.path.as_str()), ("POST", "/exec/abc"));
        assert_eq!(h.query_values("port"), vec!["80", "81,82"]);
        assert_eq!(
            h.values("x-stream-protocol-version").collect::<Vec<_>>(),
            vec!["a", "b"]
        );
        assert!(parse_head(b"GET / HTTP/1.1\r\nHost").unwrap().is_none());
        assert!(parse_head(b"\x00\x01 nonsense\r\n\r\n").is_err());
    }

    #[test]
    fn spdy_negotiation_follows_the_clients_order() {
        let h = head(
            "POST /exec/t HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v5.channel.k8s.io\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\nX-Stream-Protocol-Version: channel.k8s.io\r\n\r\n",
        );
        assert_eq!(
            choose(&h, &SPDY, &WS),
            Ok(Transport::Spdy("v4.channel.k8s.io"))
        );
        let h = head(
            "POST /exec/t HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v9.channel.k8s.io\r\n\r\n",
        );
        let r = choose(&h, &SPDY, &WS).unwrap_err();
        assert_eq!(r.status, 403);
        assert_eq!(r.headers.len(), 2);
        let h = head("POST /exec/t HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n");
        assert_eq!(choose(&h, &SPDY, &WS).unwrap_err().status, 400);
    }

    #[test]
    fn websocket_negotiation() {
        let h = head(
            "GET /exec/t HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n",
        );
        assert_eq!(
            choose(&h, &SPDY, &WS),
            Ok(Transport::WebSocket("v5.channel.k8s.io"))
        );
        let h = head(
            "GET /exec/t HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: x\r\n\r\n",
        );
        assert_eq!(choose(&h, &SPDY, &WS).unwrap_err().status, 400);
        let h = head("GET /exec/t HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(choose(&h, &SPDY, &WS).unwrap_err().status, 400);
    }

    #[test]
    fn routes_consume_the_token_once_and_check_its_kind() {
        let tokens = TokenCache::new();
        let t = tokens
            .insert(StreamRequest::Attach(Default::default()))
            .unwrap();
        let attach = head(&format!("POST /attach/{t} HTTP/1.1\r\n\r\n"));
        assert!(matches!(
            route(&attach, &tokens),
            Some(StreamRequest::Attach(_))
        ));
        assert!(route(&attach, &tokens).is_none());
        let t = tokens
            .insert(StreamRequest::Attach(Default::default()))
            .unwrap();
        assert!(route(&head(&format!("GET /exec/{t} HTTP/1.1\r\n\r\n")), &tokens).is_none());
        assert!(route(&head(&format!("GET /attach/{t} HTTP/1.1\r\n\r\n")), &tokens).is_none());
        assert!(route(&head("GET /attach/ HTTP/1.1\r\n\r\n"), &tokens).is_none());
    }
}
