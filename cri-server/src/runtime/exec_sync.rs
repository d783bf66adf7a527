//! CRI `ExecSync`: runs a command in a running container and returns its output and exit code (the kubelet's
//! exec probes, `crictl exec -s`). The command is a new Wasm instance inside the pod process, with the
//! container's files, environment and memory limit; `cmd[0]` is found in the container's root filesystem
//! through its PATH and must be Wasm.
//!
//! A timeout ends the instance and answers `DeadlineExceeded`, as containerd does (the kubelet then reports the
//! probe as timed out). The call is tied to its caller: a caller who gives up ends the command too.

use std::pin::Pin;
use std::task::{Context, Poll};

use proto::cri::{ExecSyncRequest, ExecSyncResponse};
use tokio::io::AsyncWrite;

use super::Runtime;
use super::exec_in_pod::{ExecCommand, ExecIo};
use crate::error::ServerError;

/// Output kept per stream. The kubelet accepts CRI messages up to 16 MiB; a probe reads far less.
const MAX_OUTPUT: usize = 8 * 1024 * 1024;

impl Runtime {
    pub async fn exec_sync(&self, req: ExecSyncRequest) -> Result<ExecSyncResponse, ServerError> {
        let (stdout, stderr) = (Capture::default(), Capture::default());
        let io = ExecIo {
            stdin: None,
            stdout: Box::new(stdout.clone()),
            stderr: Box::new(stderr.clone()),
        };
        let command = ExecCommand {
            container_id: req.container_id,
            cmd: req.cmd,
            tty: false,
            timeout: req.timeout,
        };
        let cmd = command.cmd.join(" ");
        let exit = self.exec_in_pod(command, io).await?;
        if exit.timed_out {
            return Err(ServerError::DeadlineExceeded(format!(
                "command {cmd:?} timed out after {}s and was ended",
                req.timeout
            )));
        }
        Ok(ExecSyncResponse {
            stdout: stdout.take(),
            stderr: stderr.take(),
            exit_code: exit.exit_code,
        })
    }
}

/// An in-memory writer keeping the first [`MAX_OUTPUT`] bytes; clones share the buffer.
#[derive(Clone, Default)]
struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Capture {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl AsyncWrite for Capture {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut v = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let room = MAX_OUTPUT.saturating_sub(v.len()).min(buf.len());
        v.extend_from_slice(&buf[..room]);
        // Past the limit output is dropped, not refused: the command must not fail because of it.
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
