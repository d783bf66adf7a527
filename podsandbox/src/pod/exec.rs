//! Exec: a program run as a new instance inside a running container, with the container's environment,
//! directories and memory limit, its output streamed back to the caller as it is written.
//!
//! WASI has no processes, so an exec is not a child of the container: it is a second instance in the same pod
//! process, sharing the container's files (the same pre-opened host directories). It ends when its program
//! exits, when its timeout passes, when the caller goes away, or when the container itself exits.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use proto::pod::exec_input::Input;
use proto::pod::exec_output::Output;
use proto::pod::{ContainerSpec, ExecExit, ExecInput, ExecOutput, ExecStart};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tonic::{Status, Streaming};
use tracing::{debug, info};

use super::containers::{Containers, base_run_spec, program_name, thread_name};
use super::instance::{self, Launch};
use crate::engine::{ExitReason, GuestStdin, Usage};
use crate::guest_path;
use crate::logs::LogSink;

/// Bytes of stdin buffered between the caller and a guest that is not reading.
const STDIN_BUFFER: usize = 64 * 1024;

/// Replies of one exec call, in order: output chunks, then the exit.
pub type ExecReplies = mpsc::UnboundedReceiver<Result<ExecOutput, Status>>;

/// Starts `start` in its container and returns the reply stream. `input` carries the rest of the caller's
/// messages (stdin, its end, resizes). Fails before anything runs if the container is not running or the
/// program cannot be compiled.
pub async fn exec(
    containers: &Arc<Containers>,
    start: ExecStart,
    input: Streaming<ExecInput>,
) -> Result<ExecReplies, Status> {
    if start.args.is_empty() {
        return Err(Status::invalid_argument(
            "exec needs a command: args is empty",
        ));
    }
    let (spec, mut container_exited) = containers.exec_target(&start.container_id)?;
    let program_path = resolve_program(&spec, &start.args[0])?;
    let program = containers.program(&program_path).await?;

    let (reply_tx, reply_rx) = mpsc::unbounded_channel();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Bytes>();
    let (err_tx, mut err_rx) = mpsc::unbounded_channel::<Bytes>();
    let stdout = LogSink::channel(out_tx, start.tty);
    // With a terminal both streams are the terminal, as for a process whose fds 1 and 2 are the same tty.
    let stderr = if start.tty {
        drop(err_tx);
        stdout.clone()
    } else {
        LogSink::channel(err_tx, false)
    };
    let stdin = if start.stdin {
        let (writer, reader) = tokio::io::duplex(STDIN_BUFFER);
        tokio::spawn(pump_stdin(input, writer));
        Some(GuestStdin::new(reader, start.tty))
    } else {
        // Nothing will be read, but the call stays open: its end is how a caller that went away is noticed.
        tokio::spawn(drain(input));
        None
    };
    let mut run = base_run_spec(&spec, Usage::new());
    run.args = start.args.clone();
    run.stdin = stdin;
    run.stdout = stdout;
    run.stderr = stderr;

    let engine = containers.engine().clone();
    let timed_out = Arc::new(AtomicBool::new(false));
    let timeout = u64::try_from(start.timeout_seconds)
        .ok()
        .filter(|s| *s > 0)
        .map(Duration::from_secs);
    info!(container_id = %start.container_id, argv0 = %start.args[0], tty = start.tty, stdin = start.stdin, ?timeout, "exec started");
    let stop = {
        let timed_out = Arc::clone(&timed_out);
        let caller = reply_tx.clone();
        async move {
            let deadline = async {
                match timeout {
                    Some(t) => {
                        tokio::time::sleep(t).await;
                        timed_out.store(true, Ordering::Relaxed);
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = deadline => {}
                () = caller.closed() => debug!("exec caller went away"),
                _ = container_exited.wait_for(|done| *done) => debug!("exec ended with its container"),
            }
        }
    };
    let container_id = start.container_id.clone();
    // An exec runs as its container's user, as a process started by `runc exec` does.
    let launch = Launch {
        name: thread_name("exec", &container_id),
        run_as: spec.run_as.clone(),
        status_file: None,
        program_name: program_name(&start.args),
    };
    tokio::spawn(async move {
        let running = instance::run(engine, program, run, stop, launch);
        tokio::pin!(running);
        let status = loop {
            tokio::select! {
                status = &mut running => break status,
                Some(b) = out_rx.recv() => send(&reply_tx, Output::Stdout(b)),
                Some(b) = err_rx.recv() => send(&reply_tx, Output::Stderr(b)),
            }
        };
        // The instance is gone and its sinks with it: what is still queued is all there is.
        while let Ok(b) = out_rx.try_recv() {
            send(&reply_tx, Output::Stdout(b));
        }
        while let Ok(b) = err_rx.try_recv() {
            send(&reply_tx, Output::Stderr(b));
        }
        let timed_out = timed_out.load(Ordering::Relaxed);
        let reason = match status.reason {
            ExitReason::Completed => "Completed",
            ExitReason::OomKilled => "OOMKilled",
            ExitReason::Error | ExitReason::Killed => "Error",
        };
        info!(container_id = %container_id, exit_code = status.code, timed_out, "exec ended");
        send(
            &reply_tx,
            Output::Exit(ExecExit {
                exit_code: status.code,
                reason: reason.to_string(),
                message: status.message,
                timed_out,
            }),
        );
    });
    Ok(reply_rx)
}

/// Finds the exec's program among the container's directories (its root and mounts), through its `PATH`.
fn resolve_program(spec: &ContainerSpec, argv0: &str) -> Result<PathBuf, Status> {
    let mounts: Vec<guest_path::Mount<'_>> = spec
        .preopens
        .iter()
        .map(|p| guest_path::Mount {
            guest: &p.guest_path,
            host: Path::new(&p.host_path),
        })
        .collect();
    let path_env = spec.env.iter().find_map(|kv| kv.strip_prefix("PATH="));
    let workdir = if spec.working_dir.is_empty() {
        "/"
    } else {
        &spec.working_dir
    };
    guest_path::find_program_in(&mounts, argv0, path_env, workdir)
        .map(|(_, host)| host)
        .ok_or_else(|| {
            Status::not_found(format!(
                "executable {argv0:?} not found in the container's files{}",
                if argv0.contains('/') {
                    ""
                } else {
                    " on its PATH"
                }
            ))
        })
}

fn send(tx: &mpsc::UnboundedSender<Result<ExecOutput, Status>>, output: Output) {
    // A caller that went away ends the instance through `stop`; its last replies have nowhere to go.
    let _ = tx.send(Ok(ExecOutput {
        output: Some(output),
    }));
}

/// Copies the caller's stdin messages into the guest's stdin until the caller ends it (message or end of
/// call). Dropping the writer is the guest's end-of-file.
async fn pump_stdin(mut input: Streaming<ExecInput>, mut writer: tokio::io::DuplexStream) {
    let mut open = true;
    while let Ok(Some(msg)) = input.message().await {
        match msg.input {
            Some(Input::Stdin(bytes)) if open => {
                if writer.write_all(&bytes).await.is_err() {
                    // The guest's stdin is gone (it exited): keep reading so the call's end is still seen.
                    open = false;
                }
            }
            Some(Input::StdinEof(_)) => {
                open = false;
                let _ = writer.shutdown().await;
            }
            // WASI has no terminal-size interface: a resize has nothing to reach.
            Some(Input::Resize(_)) | Some(Input::Stdin(_)) | Some(Input::Start(_)) | None => {}
        }
    }
}

async fn drain(mut input: Streaming<ExecInput>) {
    while let Ok(Some(_)) = input.message().await {}
}
