//! Attach: a client connected to a running container's own instance, as `docker attach` or `kubectl attach`.
//! It receives the container's output from the moment it attaches (the log file has the history), and its
//! stdin reaches the container's stdin when the container was created with one. Several clients may attach
//! at once; each gets all output. Detaching leaves the container running, except that with `stdin_once` the
//! end of a client's stdin is the end of the container's.

use std::sync::Arc;

use proto::pod::exec_input::Input;
use proto::pod::exec_output::Output;
use proto::pod::{ExecExit, ExecInput, ExecOutput, ExecStart};
use tokio::io::AsyncWriteExt;
use tokio::sync::{broadcast, mpsc};
use tonic::{Status, Streaming};
use tracing::info;

use super::containers::{AttachStdin, Containers};
use super::exec::ExecReplies;
use crate::logs::Stream;

pub fn attach(
    containers: &Arc<Containers>,
    start: ExecStart,
    input: Streaming<ExecInput>,
) -> Result<ExecReplies, Status> {
    let target = containers.attach_target(&start.container_id)?;
    let (reply_tx, reply_rx) = mpsc::unbounded_channel();
    info!(container_id = %start.container_id, stdin = target.stdin.is_some(), "client attached");
    tokio::spawn(pump_stdin(input, target.stdin, target.stdin_once));

    let (mut output, mut exited) = (target.output, target.exited);
    let containers = Arc::clone(containers);
    let id = start.container_id;
    tokio::spawn(async move {
        let send = |out: Output| {
            let _ = reply_tx.send(Ok(ExecOutput { output: Some(out) }));
        };
        let forward = |(stream, bytes): (Stream, bytes::Bytes)| match stream {
            Stream::Stdout => send(Output::Stdout(bytes)),
            Stream::Stderr => send(Output::Stderr(bytes)),
        };
        loop {
            tokio::select! {
                chunk = output.recv() => match chunk {
                    Ok(chunk) => forward(chunk),
                    // A client too slow to keep up loses output, as a slow terminal would; the log has it all.
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                _ = exited.wait_for(|done| *done) => {
                    while let Ok(chunk) = output.try_recv() {
                        forward(chunk);
                    }
                    break;
                }
                () = reply_tx.closed() => {
                    info!(container_id = %id, "client detached");
                    return;
                }
            }
        }
        let status = containers.status(&id).unwrap_or_default();
        send(Output::Exit(ExecExit {
            exit_code: status.exit_code,
            reason: status.reason,
            message: status.message,
            timed_out: false,
        }));
    });
    Ok(reply_rx)
}

/// Copies the client's stdin into the container's. With `stdin_once`, the client's end of stdin (or its
/// leaving) closes the container's stdin for good.
async fn pump_stdin(mut input: Streaming<ExecInput>, stdin: Option<AttachStdin>, once: bool) {
    while let Ok(Some(msg)) = input.message().await {
        match msg.input {
            Some(Input::Stdin(bytes)) => {
                if let Some(stdin) = &stdin
                    && let Some(writer) = stdin.lock().await.as_mut()
                {
                    // The container stopped reading (exited): the bytes have nowhere to go.
                    let _ = writer.write_all(&bytes).await;
                }
            }
            Some(Input::StdinEof(_)) => break,
            _ => {}
        }
    }
    if once && let Some(stdin) = &stdin {
        // Dropping the writer is the container's end-of-file.
        stdin.lock().await.take();
    }
}
