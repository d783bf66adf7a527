//! CRI `Attach`: checks the request like Exec does and returns a one-time streaming URL; the attachment
//! happens when the client connects there ([`attach_session`]).

use std::sync::Arc;

use proto::cri::{AttachRequest, AttachResponse};

use super::Runtime;
use super::exec::check_streams;
use crate::error::ServerError;
use crate::streaming::{StreamIo, StreamRequest};

impl Runtime {
    pub fn attach(&self, req: AttachRequest) -> Result<AttachResponse, ServerError> {
        let c = self.running_container(&req.container_id, "one can only attach to")?;
        check_streams(req.tty, req.stdin, req.stdout, req.stderr)?;
        let url = self.stream_url(StreamRequest::Attach(AttachRequest {
            container_id: c.meta.id.clone(),
            ..req
        }))?;
        Ok(AttachResponse { url })
    }
}

/// Runs an Attach session: called by the streaming server (through [`super::RuntimeBackend`]) when a client
/// connects to an Attach URL. The client gets the container's output from now on and, when the container was
/// created with `stdin`, feeds its stdin; the session ends when the container exits or the client goes away
/// (this future is then dropped). Streams the client did not ask for are discarded.
pub(super) async fn attach_session(
    rt: Arc<Runtime>,
    container_id: String,
    tty: bool,
    io: StreamIo,
) -> Result<(), ServerError> {
    // Containers never have a terminal (WASI has none to give them), so `tty` changes nothing here.
    let _ = tty;
    rt.attach_in_pod(container_id, super::exec::session_io(io))
        .await
        .map(drop)
}
