//! Port-forward sessions.
//!
//! - SPDY (`portforward.k8s.io`, plain or tunnelled in a WebSocket as `SPDY/3.1+portforward.k8s.io`): for
//!   every local connection the client opens an `error` and a `data` stream with the same `requestid` and
//!   the target `port` header; the server dials the port in the pod and copies bytes both ways. Any number of
//!   connections share one session.
//! - WebSocket `v4.channel.k8s.io`: the ports come from the URL (`?port=80&port=443`) or the CRI request;
//!   port n uses channel 2n for data and 2n+1 for errors, each starting with the port as 2 little-endian
//!   bytes. One connection per port, for the life of the WebSocket.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proto::cri::PortForwardRequest;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use super::backend::StreamBackend;
use super::http::{HttpConn, Refusal, RequestHead, Transport, choose};
use super::pipe::{Outbound, pump_in, pump_out};
use super::spdy::{IncomingStream, Session};
use super::websocket::channels::{demux, tunnel};
use super::websocket::{ChannelWriter, WsSession};
use super::{ConnRead, ConnWrite};
use crate::error::chain;

pub const SPDY_PROTOCOL: &str = "portforward.k8s.io";
/// WebSocket subprotocols: SPDY tunnelled in binary messages (what client-go's port-forward dialer asks
/// for), and the older channel protocol (`""`: no protocol named, served the same way).
pub const WS_TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
pub const WS_CHANNEL_PROTOCOL: &str = "v4.channel.k8s.io";

/// How long the second stream of a pair may lag behind the first (the kubelet's StreamCreationTimeout).
const PAIR_TIMEOUT: Duration = Duration::from_secs(30);
const LINGER: Duration = Duration::from_secs(5);

pub async fn serve(
    conn: HttpConn,
    head: &RequestHead,
    req: PortForwardRequest,
    backend: Arc<dyn StreamBackend>,
) {
    let pod_id = req.pod_sandbox_id.clone();
    let transport = match choose(
        head,
        &[SPDY_PROTOCOL],
        &[WS_TUNNEL_PROTOCOL, WS_CHANNEL_PROTOCOL, ""],
    ) {
        Ok(t) => t,
        Err(refusal) => {
            debug!(status = refusal.status, why = %refusal.body, "port-forward upgrade refused");
            conn.refuse(refusal).await;
            return;
        }
    };
    // The channel protocol fixes its ports up front; a bad list is refused before the upgrade.
    let ws_ports = match transport {
        Transport::WebSocket(p) if p != WS_TUNNEL_PROTOCOL => match channel_ports(head, &req) {
            Ok(ports) => Some(ports),
            Err(why) => {
                conn.refuse(Refusal::new(400, "Bad Request", why)).await;
                return;
            }
        },
        _ => None,
    };
    let (read, write) = match conn.accept(head, transport).await {
        Ok(halves) => halves,
        Err(err) => {
            debug!(error = %err, "port-forward client went away during the upgrade");
            return;
        }
    };
    info!(?transport, pod_id = %pod_id, "port-forward session started");
    match (transport, ws_ports) {
        (Transport::Spdy(_), _) => serve_spdy(read, write, pod_id.clone(), backend).await,
        (Transport::WebSocket(_), None) => {
            let (ws, incoming) = WsSession::start(read, write);
            let (read, write) = tunnel(ws, incoming);
            serve_spdy(read, write, pod_id.clone(), backend).await
        }
        (Transport::WebSocket(_), Some(ports)) => {
            serve_channels(read, write, pod_id.clone(), ports, backend).await
        }
    }
    info!(pod_id = %pod_id, "port-forward session ended");
}

/// A `requestid`'s two streams while the second is awaited.
struct Pair {
    data: Option<IncomingStream>,
    error: Option<IncomingStream>,
    since: Instant,
}

async fn serve_spdy(
    read: ConnRead,
    write: ConnWrite,
    pod_id: String,
    backend: Arc<dyn StreamBackend>,
) {
    let mut session = Session::start(read, write);
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut forwards = JoinSet::new();
    let mut sweep = tokio::time::interval(Duration::from_secs(5));
    loop {
        let stream = tokio::select! {
            s = session.incoming.recv() => match s {
                Some(s) => s,
                None => break,
            },
            _ = sweep.tick() => {
                expire_pairs(&mut pairs).await;
                continue;
            }
            Some(_) = forwards.join_next(), if !forwards.is_empty() => continue,
        };
        if let Err(why) = stream_port(&stream) {
            debug!(why, "refusing a port-forward stream");
            stream.refuse().await;
            continue;
        }
        let kind = stream
            .headers
            .get("streamtype")
            .unwrap_or_default()
            .to_string();
        // Clients from before request ids paired streams by id: error n, data n+2.
        let request_id = match stream.headers.get("requestid") {
            Some(id) => id.to_string(),
            None if kind == "data" => stream.id.saturating_sub(2).to_string(),
            None => stream.id.to_string(),
        };
        if stream.accept().await.is_err() {
            break;
        }
        let pair = pairs.entry(request_id.clone()).or_insert_with(|| Pair {
            data: None,
            error: None,
            since: Instant::now(),
        });
        let slot = if kind == "data" {
            &mut pair.data
        } else {
            &mut pair.error
        };
        if slot.is_some() {
            let msg = format!(
                "error processing stream for request {request_id}: {kind} stream already assigned"
            );
            if let Some(e) = &pair.error {
                let _ = e.writer.write(Bytes::from(msg)).await;
            }
            stream.writer.reset().await;
            continue;
        }
        *slot = Some(stream);
        if pair.data.is_some()
            && pair.error.is_some()
            && let Some(Pair {
                data: Some(data),
                error: Some(error),
                ..
            }) = pairs.remove(&request_id)
        {
            // The data stream's port header names the target, as in the kubelet.
            let port = stream_port(&data).unwrap_or_default();
            forwards.spawn(forward_spdy(
                Arc::clone(&backend),
                pod_id.clone(),
                port,
                data,
                error,
            ));
        }
    }
    // The client is gone: dropping the forwards ends their connections into the pod.
    forwards.abort_all();
    session.close(LINGER).await;
}

/// The `port` header of a stream, validated like the kubelet does.
fn stream_port(stream: &IncomingStream) -> Result<u16, &'static str> {
    match stream.headers.get("streamtype") {
        Some("data") | Some("error") => {}
        Some(_) => return Err("invalid stream type"),
        None => return Err("missing streamtype header"),
    }
    let port = stream
        .headers
        .get("port")
        .ok_or("missing port header")?
        .parse::<u16>()
        .map_err(|_| "port header is not a port number")?;
    if port == 0 {
        return Err("port must be > 0");
    }
    Ok(port)
}

/// Gives up on pairs whose second stream never came.
async fn expire_pairs(pairs: &mut HashMap<String, Pair>) {
    let now = Instant::now();
    let expired: Vec<String> = pairs
        .iter()
        .filter(|(_, p)| now.duration_since(p.since) > PAIR_TIMEOUT)
        .map(|(id, _)| id.clone())
        .collect();
    for id in expired {
        if let Some(p) = pairs.remove(&id) {
            warn!(request_id = %id, "port-forward request timed out waiting for its streams");
            if let Some(e) = p.error {
                let _ = e
                    .writer
                    .write(Bytes::from(format!(
                        "timed out waiting for the streams of request {id}"
                    )))
                    .await;
                e.writer.finish().await;
            }
            if let Some(d) = p.data {
                d.writer.reset().await;
            }
        }
    }
}

async fn forward_spdy(
    backend: Arc<dyn StreamBackend>,
    pod_id: String,
    port: u16,
    data: IncomingStream,
    error: IncomingStream,
) {
    let data_out = Outbound::Spdy(data.writer);
    let error_out = Outbound::Spdy(error.writer);
    forward(backend, pod_id, port, data.inbound, data_out, error_out).await;
}

/// One forwarded connection: dials the pod, then copies until the pod closes its side. A dial failure is
/// reported on the error stream in the kubelet's words.
async fn forward(
    backend: Arc<dyn StreamBackend>,
    pod_id: String,
    port: u16,
    from_client: mpsc::Receiver<Bytes>,
    to_client: Outbound,
    errors: Outbound,
) {
    match backend.port_forward(pod_id.clone(), port).await {
        Ok(conn) => {
            debug!(pod_id = %pod_id, port, "port-forward connection open");
            let (from_pod, to_pod) = conn.into_split();
            // The client's half ends with its FIN (or the session); the pod's half decides when the
            // connection is over, as in the kubelet's runtimes.
            let upstream = tokio::spawn(pump_in(from_client, to_pod));
            let bytes = pump_out(from_pod, &to_client).await;
            errors.finish().await;
            let _ = upstream.await;
            debug!(pod_id = %pod_id, port, bytes_to_client = bytes, "port-forward connection closed");
        }
        Err(err) => {
            let msg = format!(
                "error forwarding port {port} to pod {pod_id}, uid : {}",
                chain(&err)
            );
            warn!(pod_id = %pod_id, port, error = %chain(&err), "port-forward dial failed");
            let _ = errors.write(Bytes::from(msg)).await;
            errors.finish().await;
            to_client.finish().await;
        }
    }
}

/// The ports of a channel-protocol session: `port` query parameters (comma-separated lists allowed), else
/// the CRI request's ports.
fn channel_ports(head: &RequestHead, req: &PortForwardRequest) -> Result<Vec<u16>, String> {
    let query = head.query_values("port");
    let mut ports = Vec::new();
    if query.is_empty() {
        for p in &req.port {
            ports.push(u16::try_from(*p).map_err(|_| format!("port {p} is not a port number"))?);
        }
    } else {
        for value in query {
            for p in value.split(',') {
                ports.push(
                    p.parse::<u16>()
                        .map_err(|_| format!("unable to parse {p:?} as a port"))?,
                );
            }
        }
    }
    if ports.is_empty() {
        return Err("query parameter \"port\" is required".into());
    }
    if ports.contains(&0) {
        return Err("port must be > 0".into());
    }
    Ok(ports)
}

async fn serve_channels(
    read: ConnRead,
    write: ConnWrite,
    pod_id: String,
    ports: Vec<u16>,
    backend: Arc<dyn StreamBackend>,
) {
    let (ws, incoming) = WsSession::start(read, write);
    let mut routes = Vec::with_capacity(ports.len() * 2);
    let mut forwards = JoinSet::new();
    for (i, port) in ports.iter().copied().enumerate() {
        let (tx, rx) = mpsc::channel(16);
        routes.push(Some(tx));
        routes.push(None);
        let data = Outbound::Ws(ChannelWriter::new((2 * i) as u8, ws.sender.clone()));
        let errors = Outbound::Ws(ChannelWriter::new((2 * i + 1) as u8, ws.sender.clone()));
        let prefix = Bytes::copy_from_slice(&port.to_le_bytes());
        let _ = data.write(prefix.clone()).await;
        let _ = errors.write(prefix).await;
        forwards.spawn(forward(
            Arc::clone(&backend),
            pod_id.clone(),
            port,
            rx,
            data,
            errors,
        ));
    }
    let mut demuxer = tokio::spawn(demux(incoming, routes, false));
    tokio::select! {
        _ = &mut demuxer => forwards.abort_all(),
        _ = async { while forwards.join_next().await.is_some() {} } => {}
    }
    demuxer.abort();
    ws.close(LINGER).await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn head(target: &str) -> RequestHead {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        RequestHead {
            method: "GET".into(),
            path: path.into(),
            query: query.into(),
            headers: Vec::new(),
        }
    }

    #[test]
    fn channel_ports_from_query_or_request() {
        let req = PortForwardRequest {
            pod_sandbox_id: "p".into(),
            port: vec![8080],
        };
        assert_eq!(
            channel_ports(&head("/portforward/t?port=80,81&port=82"), &req).unwrap(),
            vec![80, 81, 82]
        );
        assert_eq!(
            channel_ports(&head("/portforward/t"), &req).unwrap(),
            vec![8080]
        );
        assert!(channel_ports(&head("/portforward/t?port=0"), &req).is_err());
        assert!(channel_ports(&head("/portforward/t?port=x"), &req).is_err());
        assert!(channel_ports(&head("/portforward/t"), &PortForwardRequest::default()).is_err());
    }
}
