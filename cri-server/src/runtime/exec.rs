//! CRI `Exec`: checks the request and returns a one-time streaming URL; the command itself runs when the
//! client connects there ([`exec_session`]). The checks and their codes follow the kubelet's streaming
//! server (`tty` with `stderr`, no stream at all: InvalidArgument) after the container lookups containerd
//! does (unknown: NotFound, not running: FailedPrecondition).

use std::sync::Arc;

use proto::cri::{ExecRequest, ExecResponse};

use super::Runtime;
use crate::error::ServerError;
use crate::state::{Container, ContainerState};
use crate::streaming::{StreamIo, StreamRequest};

impl Runtime {
    pub fn exec(&self, req: ExecRequest) -> Result<ExecResponse, ServerError> {
        let c = self.running_container(&req.container_id, "commands can only be executed in")?;
        check_streams(req.tty, req.stdin, req.stdout, req.stderr)?;
        if req.cmd.first().is_none_or(String::is_empty) {
            return Err(ServerError::InvalidArgument(
                "cmd must name the program to run as its first element".into(),
            ));
        }
        let url = self.stream_url(StreamRequest::Exec(ExecRequest {
            container_id: c.meta.id.clone(),
            ..req
        }))?;
        Ok(ExecResponse { url })
    }

    /// The container `id` names, if it is running. `what` completes the error message ("... only be
    /// executed in / attached to a running container").
    pub(super) fn running_container(
        &self,
        id: &str,
        what: &str,
    ) -> Result<Arc<Container>, ServerError> {
        let c = self.store.container(id)?;
        let state = c.state();
        if state != ContainerState::Running {
            return Err(ServerError::FailedPrecondition(format!(
                "container {} is not running (state {}); {what} a running container",
                c.meta.id,
                state.to_cri().as_str_name()
            )));
        }
        Ok(c)
    }
}

/// The stream combination rules of the kubelet's streaming server.
pub(super) fn check_streams(
    tty: bool,
    stdin: bool,
    stdout: bool,
    stderr: bool,
) -> Result<(), ServerError> {
    if tty && stderr {
        // A terminal has a single output; the kubelet refuses rather than silently drop stderr.
        return Err(ServerError::InvalidArgument(
            "tty and stderr cannot both be true".into(),
        ));
    }
    if !stdin && !stdout && !stderr {
        return Err(ServerError::InvalidArgument(
            "one of stdin, stdout, or stderr must be set".into(),
        ));
    }
    Ok(())
}

/// Runs an Exec session's command: called by the streaming server (through [`super::RuntimeBackend`]) when a
/// client connects to an Exec URL. The command runs in the pod process like an ExecSync, with the client's
/// streams; its exit code is returned (the server reports non-zero codes as v4 `NonZeroExitCode`). Streams the
/// client did not ask for are discarded; all of them are dropped by the time this returns. Dropping this
/// future (the client went away) ends the command. WASI has no terminal-size interface, so resizes are read
/// and dropped.
pub(super) async fn exec_session(
    rt: Arc<Runtime>,
    container_id: String,
    cmd: Vec<String>,
    tty: bool,
    io: StreamIo,
) -> Result<i32, ServerError> {
    let exit = rt
        .exec_in_pod(
            super::ExecCommand {
                container_id,
                cmd,
                tty,
                timeout: 0,
            },
            session_io(io),
        )
        .await?;
    Ok(exit.exit_code)
}

/// A session's streams as the pod relay takes them: outputs the client did not ask for are discarded, and
/// terminal resizes are read and dropped (WASI has no terminal-size interface).
pub(super) fn session_io(io: StreamIo) -> super::ExecIo {
    let StreamIo {
        stdin,
        stdout,
        stderr,
        resize,
    } = io;
    if let Some(mut resize) = resize {
        tokio::spawn(async move { while resize.recv().await.is_some() {} });
    }
    let discard =
        || -> Box<dyn tokio::io::AsyncWrite + Send + Unpin> { Box::new(tokio::io::sink()) };
    super::ExecIo {
        stdin,
        stdout: stdout.unwrap_or_else(discard),
        stderr: stderr.unwrap_or_else(discard),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_rules() {
        assert!(check_streams(false, false, true, true).is_ok());
        assert!(check_streams(true, true, true, false).is_ok());
        assert!(matches!(
            check_streams(true, false, true, true),
            Err(ServerError::InvalidArgument(_))
        ));
        assert!(matches!(
            check_streams(false, false, false, false),
            Err(ServerError::InvalidArgument(_))
        ));
    }
}
