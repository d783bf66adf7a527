//! The `pod.v1` gRPC service of a pod process, served on its unix socket.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use proto::pod::pod_server::{Pod, PodServer};
use proto::pod::{
    Bootstrap, BootstrapReply, ContainerRef, ContainerSpec, ContainerStatus, ContainerStatusList,
    Empty, ExecInput, ExecOutput, HelloReply, HelloRequest, PROTOCOL_VERSION, StatsReply,
    StopContainerRequest,
};
use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::{BroadcastStream, UnboundedReceiverStream, UnixListenerStream};
use tonic::{Request, Response, Status, Streaming};
use tracing::info;

use super::bootstrap::{detach_stdout, write_message};
use super::containers::Containers;
use crate::engine::Engine;
use crate::error_chain;
use crate::fsutil::process_start_time;

struct PodService {
    pod_id: String,
    pid: u32,
    start_time: u64,
    containers: Arc<Containers>,
    /// Turns true at Shutdown: the server stops accepting calls, and the long-lived Events streams end so the
    /// graceful shutdown (which waits for calls in flight) can finish and the process exit.
    closing: watch::Sender<bool>,
}

/// Builds the engine, binds the socket, answers the bootstrap and serves until a Shutdown request.
pub async fn serve(boot: Bootstrap) -> Result<(), std::io::Error> {
    let pid = crate::fsutil::node_pid();
    let start_time = process_start_time(pid).unwrap_or(0);
    let engine = match Engine::new() {
        Ok(e) => e,
        Err(err) => {
            let msg = format!("creating the wasmtime engine: {}", error_chain(&err));
            super::reply_error(msg.clone());
            return Err(std::io::Error::other(msg));
        }
    };
    let socket = PathBuf::from(&boot.socket_path);
    let listener = match bind(&socket) {
        Ok(l) => l,
        Err(err) => {
            super::reply_error(format!("binding {}: {err}", socket.display()));
            return Err(err);
        }
    };
    write_message(
        std::io::stdout().lock(),
        &BootstrapReply {
            protocol_version: PROTOCOL_VERSION,
            pid,
            start_time,
            error: String::new(),
        },
    )?;
    detach_stdout()?;
    info!(pod_id = %boot.pod_id, pid, socket = %socket.display(), "pod process serving");

    let (closing, mut closed) = watch::channel(false);
    let containers = Containers::new(engine, PathBuf::from(&boot.state_dir));
    let service = PodService {
        pod_id: boot.pod_id.clone(),
        pid,
        start_time,
        containers: Arc::clone(&containers),
        closing,
    };
    let result = tonic::transport::Server::builder()
        .add_service(PodServer::new(service))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async move {
            let _ = closed.wait_for(|c| *c).await;
        })
        .await;
    containers.stop_all().await;
    let _ = std::fs::remove_file(&socket);
    result.map_err(std::io::Error::other)
}

/// Binds the pod socket. A socket address holds at most 107 bytes of path, and `<state>/pods/<64 hex>/pod.sock`
/// exceeds that under a long state directory; so the process moves into the socket's directory and binds the
/// bare file name (nothing else in the pod process depends on its working directory).
fn bind(path: &std::path::Path) -> std::io::Result<UnixListener> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the pod socket path needs a directory and a file name",
        ));
    };
    std::fs::create_dir_all(dir)?;
    std::env::set_current_dir(dir)?;
    match std::fs::remove_file(name) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    UnixListener::bind(name)
}

type EventStream = Pin<Box<dyn Stream<Item = Result<ContainerStatus, Status>> + Send + 'static>>;
type ExecReplyStream = Pin<Box<dyn Stream<Item = Result<ExecOutput, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Pod for PodService {
    async fn hello(&self, _: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        Ok(Response::new(HelloReply {
            protocol_version: PROTOCOL_VERSION,
            pod_id: self.pod_id.clone(),
            pid: self.pid,
            start_time: self.start_time,
        }))
    }

    async fn create_container(
        &self,
        req: Request<ContainerSpec>,
    ) -> Result<Response<ContainerStatus>, Status> {
        self.containers
            .create(req.into_inner())
            .await
            .map(Response::new)
    }

    async fn start_container(
        &self,
        req: Request<ContainerRef>,
    ) -> Result<Response<ContainerStatus>, Status> {
        self.containers
            .start(&req.into_inner().id)
            .map(Response::new)
    }

    async fn stop_container(
        &self,
        req: Request<StopContainerRequest>,
    ) -> Result<Response<ContainerStatus>, Status> {
        let req = req.into_inner();
        // A negative timeout (CRI allows any int64) means none.
        let grace = Duration::from_secs(u64::try_from(req.timeout_seconds).unwrap_or(0));
        self.containers
            .stop(&req.id, grace)
            .await
            .map(Response::new)
    }

    async fn remove_container(
        &self,
        req: Request<ContainerRef>,
    ) -> Result<Response<Empty>, Status> {
        self.containers.remove(&req.into_inner().id)?;
        Ok(Response::new(Empty {}))
    }

    async fn list_containers(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<ContainerStatusList>, Status> {
        Ok(Response::new(ContainerStatusList {
            containers: self.containers.list(),
        }))
    }

    async fn reopen_log(&self, req: Request<ContainerRef>) -> Result<Response<Empty>, Status> {
        self.containers.reopen_log(&req.into_inner().id)?;
        Ok(Response::new(Empty {}))
    }

    type EventsStream = EventStream;

    async fn events(&self, _: Request<Empty>) -> Result<Response<Self::EventsStream>, Status> {
        let stream = BroadcastStream::new(self.containers.subscribe()).map(|ev| {
            // A lagging subscriber lost events: end its stream so it reconnects and resynchronises with
            // ListContainers instead of silently missing an exit.
            ev.map_err(|e| Status::data_loss(format!("event subscriber lagged: {e}")))
        });
        let mut closed = self.closing.subscribe();
        let stream = futures::StreamExt::take_until(stream, async move {
            let _ = closed.wait_for(|c| *c).await;
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn stats(&self, _: Request<Empty>) -> Result<Response<StatsReply>, Status> {
        Ok(Response::new(self.containers.stats()))
    }

    type ExecStream = ExecReplyStream;

    async fn exec(
        &self,
        req: Request<Streaming<ExecInput>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        let mut input = req.into_inner();
        let start = start_message(&mut input, "exec").await?;
        let replies = super::exec::exec(&self.containers, start, input).await?;
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(
            replies,
        ))))
    }

    type AttachStream = ExecReplyStream;

    async fn attach(
        &self,
        req: Request<Streaming<ExecInput>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let mut input = req.into_inner();
        let start = start_message(&mut input, "attach").await?;
        let replies = super::attach::attach(&self.containers, start, input)?;
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(
            replies,
        ))))
    }

    async fn shutdown(&self, _: Request<Empty>) -> Result<Response<Empty>, Status> {
        info!(pod_id = %self.pod_id, "shutdown requested");
        self.containers.stop_all().await;
        self.closing.send_replace(true);
        Ok(Response::new(Empty {}))
    }
}

/// The `start` message an exec or attach call must begin with.
async fn start_message(
    input: &mut Streaming<ExecInput>,
    call: &str,
) -> Result<proto::pod::ExecStart, Status> {
    match input.message().await? {
        Some(ExecInput {
            input: Some(proto::pod::exec_input::Input::Start(start)),
        }) => Ok(start),
        _ => Err(Status::invalid_argument(format!(
            "an {call} call must begin with its start message"
        ))),
    }
}
