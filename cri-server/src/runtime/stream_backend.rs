//! Glue between the CRI streaming methods and the streaming server: parking a validated request under a
//! one-time token, and [`RuntimeBackend`], the daemon's [`StreamBackend`], which delegates to the functions
//! in `exec.rs`, `attach.rs` and `port_forward.rs`.

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::net::TcpStream;

use super::Runtime;
use crate::error::ServerError;
use crate::streaming::{StreamBackend, StreamIo, StreamRequest};

impl Runtime {
    /// Stores `request` for the streaming server and returns its URL,
    /// `http://<stream address>/<kind>/<token>`.
    pub(super) fn stream_url(&self, request: StreamRequest) -> Result<String, ServerError> {
        let kind = request.kind();
        let token = self.stream_tokens.insert(request)?;
        Ok(format!(
            "http://{}/{kind}/{token}",
            self.config.stream_address
        ))
    }
}

/// The daemon's streaming backend.
pub struct RuntimeBackend {
    rt: Arc<Runtime>,
}

impl RuntimeBackend {
    pub fn new(rt: Arc<Runtime>) -> RuntimeBackend {
        RuntimeBackend { rt }
    }
}

impl StreamBackend for RuntimeBackend {
    fn exec(
        &self,
        container_id: String,
        cmd: Vec<String>,
        tty: bool,
        io: StreamIo,
    ) -> BoxFuture<'static, Result<i32, ServerError>> {
        super::exec::exec_session(Arc::clone(&self.rt), container_id, cmd, tty, io).boxed()
    }

    fn attach(
        &self,
        container_id: String,
        tty: bool,
        io: StreamIo,
    ) -> BoxFuture<'static, Result<(), ServerError>> {
        super::attach::attach_session(Arc::clone(&self.rt), container_id, tty, io).boxed()
    }

    fn port_forward(
        &self,
        pod_id: String,
        port: u16,
    ) -> BoxFuture<'static, Result<TcpStream, ServerError>> {
        let rt = Arc::clone(&self.rt);
        async move { rt.dial_pod_port(&pod_id, port).await }.boxed()
    }
}
