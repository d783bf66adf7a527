//! Each instance (a container's main program or an exec) runs on a thread of its own with a single-threaded
//! async runtime.
//!
//! The thread is what makes the container's identity real: it takes the container's uid, gid, groups and
//! capabilities (`identity`) once the guest's directories are open and before the guest starts, and every host call made for the guest runs on it, file accesses
//! included. The rest of the pod process (its gRPC service, other containers) keeps running on the pod's
//! shared runtime as root. The thread also keeps one busy guest from taking a worker away from the others.

use std::future::Future;
use std::io::Write;

use proto::pod::RunAs;
use tokio::sync::oneshot;

use super::identity;
use crate::engine::{self, BeforeGuest, Engine, ExitStatus, Program, RunSpec};

/// How the thread is set up before the guest runs.
pub struct Launch {
    /// Thread name (shown by `top -H`, in core dumps).
    pub name: String,
    /// The identity to take; `None` keeps the pod process's.
    pub run_as: Option<RunAs>,
    /// Receives the thread's `/proc/self/status` lines once it has its identity (the container's `/proc`).
    pub status_file: Option<std::fs::File>,
    /// The guest program's name for that status file.
    pub program_name: String,
}

/// Runs `program` on a new thread as `launch` says and resolves to its exit.
pub fn run(
    engine: Engine,
    program: Program,
    spec: RunSpec,
    stop: impl Future<Output = ()> + Send + 'static,
    launch: Launch,
) -> impl Future<Output = ExitStatus> + Send {
    let (tx, rx) = oneshot::channel();
    let Launch {
        name,
        run_as,
        status_file,
        program_name,
    } = launch;
    let spawned = std::thread::Builder::new().name(name).spawn(move || {
        let status = on_thread(
            &engine,
            &program,
            spec,
            stop,
            run_as,
            status_file,
            &program_name,
        );
        let _ = tx.send(status);
    });
    async move {
        if let Err(e) = spawned {
            return ExitStatus::not_started(&e);
        }
        rx.await.unwrap_or_else(|_| {
            ExitStatus::not_started(&std::io::Error::other(
                "the instance's thread ended without reporting an exit (it panicked)",
            ))
        })
    }
}

fn on_thread(
    engine: &Engine,
    program: &Program,
    mut spec: RunSpec,
    stop: impl Future<Output = ()>,
    run_as: Option<RunAs>,
    status_file: Option<std::fs::File>,
    program_name: &str,
) -> ExitStatus {
    // The identity is taken once the guest's directories are open (as root, like a runtime's mounts), right
    // before the guest starts: from then on every access the guest makes is checked against it.
    let program_name = program_name.to_string();
    spec.before_guest = Some(BeforeGuest(Box::new(move || {
        if let Some(id) = &run_as {
            identity::apply_to_current_thread(id)?;
        }
        if let Some(mut file) = status_file {
            // Best effort: a container without this file still runs, its /proc/self/status is just empty.
            let written = identity::thread_status(&program_name)
                .and_then(|text| file.write_all(text.as_bytes()));
            if let Err(error) = written {
                tracing::warn!(%error, "could not write the container's /proc/self/status");
            }
        }
        Ok(())
    })));
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return ExitStatus::not_started(&e),
    };
    runtime.block_on(engine::run(engine, program, spec, stop))
}
