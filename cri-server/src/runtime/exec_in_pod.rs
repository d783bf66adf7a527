//! Running a command inside a container through its pod process (`pod.v1 Exec`), shared by `ExecSync` and the
//! streaming `Exec`, and attaching to its own instance (`pod.v1 Attach`): the daemon checks the container,
//! then relays stdin in and output out until the exit.

use proto::pod::exec_input::Input;
use proto::pod::exec_output::Output;
use proto::pod::{Empty, ExecExit, ExecInput, ExecStart};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::Runtime;
use crate::error::ServerError;
use crate::state::ContainerState;

/// Where an exec's input comes from and its output goes.
pub struct ExecIo {
    /// `None`: the command's stdin is closed.
    pub stdin: Option<Box<dyn AsyncRead + Send + Unpin>>,
    pub stdout: Box<dyn AsyncWrite + Send + Unpin>,
    /// Ignored with `tty` (the terminal carries both streams).
    pub stderr: Box<dyn AsyncWrite + Send + Unpin>,
}

/// What the caller asks to run.
pub struct ExecCommand {
    pub container_id: String,
    pub cmd: Vec<String>,
    pub tty: bool,
    /// Seconds; 0 means no limit.
    pub timeout: i64,
}

/// Which pod-process call a relay makes.
#[derive(Clone, Copy)]
enum Call {
    Exec,
    Attach,
}

impl Runtime {
    /// Runs `command` in its container and returns how it ended, once all its output has been written to `io`.
    /// Dropping the returned future ends the command (the pod process sees its caller go away).
    pub async fn exec_in_pod(
        &self,
        command: ExecCommand,
        io: ExecIo,
    ) -> Result<ExecExit, ServerError> {
        if command.cmd.is_empty() || command.cmd[0].is_empty() {
            return Err(ServerError::InvalidArgument(
                "cmd must name the program to run as its first element".into(),
            ));
        }
        self.relay(Call::Exec, command, io).await
    }

    /// Connects `io` to the container's own instance until it exits (its exit is returned) or the future is
    /// dropped (the client detached).
    pub async fn attach_in_pod(
        &self,
        container_id: String,
        io: ExecIo,
    ) -> Result<ExecExit, ServerError> {
        let command = ExecCommand {
            container_id,
            cmd: Vec::new(),
            tty: false,
            timeout: 0,
        };
        self.relay(Call::Attach, command, io).await
    }

    async fn relay(
        &self,
        call: Call,
        command: ExecCommand,
        mut io: ExecIo,
    ) -> Result<ExecExit, ServerError> {
        let c = self.store.container(&command.container_id)?;
        if c.state() != ContainerState::Running {
            return Err(ServerError::FailedPrecondition(format!(
                "container {} is not running; {}",
                c.meta.id,
                match call {
                    Call::Exec => "commands can only be executed in a running container",
                    Call::Attach => "one can only attach to a running container",
                }
            )));
        }
        let mut client = self
            .store
            .sandbox(&c.meta.pod_id)?
            .client()
            .ok_or_else(|| {
                ServerError::FailedPrecondition(format!(
                    "the pod process of container {} is not running",
                    c.meta.id
                ))
            })?;

        // The request stream: the start message, then stdin as it arrives. The sender lives as long as the
        // call, so the pod process never mistakes an idle stdin for a caller that went away.
        let (tx, rx) = mpsc::channel::<ExecInput>(8);
        let start = ExecStart {
            container_id: c.meta.id.clone(),
            args: command.cmd.clone(),
            stdin: io.stdin.is_some(),
            tty: command.tty,
            timeout_seconds: command.timeout.max(0),
        };
        let _ = tx
            .send(ExecInput {
                input: Some(Input::Start(start)),
            })
            .await;
        let pump = io
            .stdin
            .take()
            .map(|stdin| tokio::spawn(pump_stdin(stdin, tx.clone())));
        let op = || match call {
            Call::Exec => format!("executing {:?} in container {}", command.cmd[0], c.meta.id),
            Call::Attach => format!("attaching to container {}", c.meta.id),
        };
        let requests = ReceiverStream::new(rx);
        let replies = match call {
            Call::Exec => client.exec(requests).await,
            Call::Attach => client.attach(requests).await,
        };
        let mut replies = replies
            .map_err(|status| ServerError::PodRpc { op: op(), status })?
            .into_inner();

        let mut exit = None;
        while let Some(reply) = replies
            .message()
            .await
            .map_err(|status| ServerError::PodRpc { op: op(), status })?
        {
            match reply.output {
                Some(Output::Stdout(b)) => write(&mut io.stdout, &b).await,
                Some(Output::Stderr(b)) => write(&mut io.stderr, &b).await,
                Some(Output::Exit(e)) => {
                    exit = Some(e);
                    break;
                }
                None => {}
            }
        }
        if let Some(pump) = pump {
            pump.abort();
        }
        drop(tx);
        let _ = io.stdout.flush().await;
        let _ = io.stderr.flush().await;
        exit.ok_or_else(|| ServerError::PodRpc {
            op: op(),
            status: tonic::Status::unavailable(
                "the pod process ended the exec without an exit status",
            ),
        })
    }
}

/// Output the caller no longer reads is dropped: the command keeps running to its end, as a process whose
/// terminal went away does until it writes.
async fn write(out: &mut (dyn AsyncWrite + Send + Unpin), bytes: &[u8]) {
    let _ = out.write_all(bytes).await;
}

async fn pump_stdin(mut stdin: Box<dyn AsyncRead + Send + Unpin>, tx: mpsc::Sender<ExecInput>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match stdin.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let msg = ExecInput {
                    input: Some(Input::Stdin(buf[..n].to_vec().into())),
                };
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
        }
    }
    let _ = tx
        .send(ExecInput {
            input: Some(Input::StdinEof(Empty {})),
        })
        .await;
}
