//! Watches one pod process: applies its container events to the records, and notices when it dies.
//!
//! The watcher subscribes to the pod's event stream first and then lists all containers, so no exit can fall
//! between the two. When the stream ends, the pod process is either gone (pid + start time no longer match:
//! the sandbox becomes NotReady and its containers Exited, with exit records the pod process left behind
//! used where they exist) or only the connection broke (the watcher reconnects).

use std::sync::Arc;
use std::time::Duration;

use proto::pod::Empty;
use tokio_stream::StreamExt;
use tracing::{debug, info, warn};

use crate::error::chain;
use crate::runtime::Runtime;
use crate::state::{ContainerState, Sandbox, SandboxState};

/// Reason reported for containers whose pod process vanished under them.
pub const POD_DIED_REASON: &str = "PodProcessDied";

/// Starts watching `sandbox`'s pod process. `child` is given when this daemon spawned it, so it gets reaped.
pub fn watch(rt: Arc<Runtime>, sandbox: Arc<Sandbox>, child: Option<tokio::process::Child>) {
    if let Some(mut child) = child {
        let id = sandbox.meta.id.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            debug!(pod_id = %id, ?status, "pod process reaped");
        });
    }
    tokio::spawn(async move {
        loop {
            if let Some(client) = sandbox.client() {
                follow(&rt, &sandbox, client).await;
            }
            // A sandbox being stopped on purpose is finished by StopPodSandbox itself.
            if sandbox.state() == SandboxState::NotReady || sandbox.is_stopping() {
                return;
            }
            let rec = sandbox.record();
            if !podsandbox::fsutil::process_matches(rec.pid, rec.start_time) {
                mark_dead(&rt, &sandbox, rec.pid);
                return;
            }
            // Still alive: the connection broke. Try again shortly.
            tokio::time::sleep(Duration::from_millis(500)).await;
            match podsandbox::client::reconnect(
                &sandbox.meta.socket,
                &sandbox.meta.id,
                rec.pid,
                rec.start_time,
            )
            .await
            {
                Ok(c) => sandbox.set_client(Some(c)),
                Err(err) => {
                    debug!(pod_id = %sandbox.meta.id, error = %chain(&err), "reconnect failed")
                }
            }
        }
    });
}

/// Applies events until the stream ends.
async fn follow(rt: &Runtime, sandbox: &Sandbox, mut client: podsandbox::client::Client) {
    let mut stream = match client.events(Empty {}).await {
        Ok(s) => s.into_inner(),
        Err(status) => {
            debug!(pod_id = %sandbox.meta.id, %status, "subscribing to pod events failed");
            return;
        }
    };
    match client.list_containers(Empty {}).await {
        Ok(list) => {
            for s in list.into_inner().containers {
                apply(rt, &s);
            }
        }
        Err(status) => {
            debug!(pod_id = %sandbox.meta.id, %status, "listing pod containers failed");
            return;
        }
    }
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(s) => apply(rt, &s),
            Err(status) => {
                debug!(pod_id = %sandbox.meta.id, %status, "pod event stream ended");
                return;
            }
        }
    }
}

fn apply(rt: &Runtime, s: &proto::pod::ContainerStatus) {
    if let Some(c) = rt.store.containers.get(&s.id)
        && let Err(err) = c.apply_pod_status(s)
    {
        warn!(container_id = %s.id, error = %chain(&err), "could not record container status");
    }
}

/// The pod process is gone: the sandbox is NotReady and no container of it can still be running.
pub fn mark_dead(rt: &Runtime, sandbox: &Sandbox, pid: u32) {
    if sandbox.state() == SandboxState::NotReady {
        return;
    }
    warn!(pod_id = %sandbox.meta.id, pid, "pod process died");
    let message = format!(
        "the pod process (pid {pid}) exited unexpectedly; its log is {}",
        sandbox.meta.state_dir.join("pod.log").display()
    );
    mark_gone(rt, sandbox, message);
}

/// Marks the sandbox NotReady and its containers exited (as [`POD_DIED_REASON`]) after its pod process is gone,
/// `message` saying why.
pub fn mark_gone(rt: &Runtime, sandbox: &Sandbox, message: String) {
    if sandbox.state() == SandboxState::NotReady {
        return;
    }
    sandbox.set_client(None);
    finish_orphans(rt, sandbox, POD_DIED_REASON, &message, true);
    if let Err(err) = sandbox.update(|r| {
        r.state = SandboxState::NotReady;
        r.reason = message.clone();
    }) {
        warn!(pod_id = %sandbox.meta.id, error = %chain(&err), "could not record sandbox state");
    }
    info!(pod_id = %sandbox.meta.id, "sandbox marked not ready");
}

/// After the pod process is gone: applies the exit records it left, then marks every container that is still
/// running (and, if `created_too`, never started) as exited with `reason`.
pub fn finish_orphans(
    rt: &Runtime,
    sandbox: &Sandbox,
    reason: &str,
    message: &str,
    created_too: bool,
) {
    for c in rt.store.containers_of(&sandbox.meta.id) {
        let exit_record = podsandbox::pod::exit_record_path(&sandbox.meta.state_dir, &c.meta.id);
        if let Some(s) = read_exit_record(&exit_record) {
            let _ = c.apply_pod_status(&s);
        }
        let result = c.update(|r| {
            let orphaned = r.state == ContainerState::Running
                || r.state == ContainerState::Unknown
                || (created_too && r.state == ContainerState::Created);
            if orphaned {
                r.state = ContainerState::Exited;
                r.finished_at = crate::runtime::now_nanos();
                r.exit_code = 137;
                r.reason = reason.into();
                r.message = message.into();
            }
        });
        if let Err(err) = result {
            warn!(container_id = %c.meta.id, error = %chain(&err), "could not record container exit");
        }
    }
}

fn read_exit_record(path: &std::path::Path) -> Option<proto::pod::ContainerStatus> {
    let bytes = std::fs::read(path).ok()?;
    prost::Message::decode(bytes.as_slice()).ok()
}

/// Gives the pod process `grace` to exit by itself, then kills it (SIGKILL: it is the pid 1 of the pod's PID
/// namespace, so everything in it goes too) and waits until it is gone, so whatever runs next (network
/// teardown, removal of its state) never races a live pod. `pid` 0 means no process was ever started. The
/// start time makes sure a recycled pid is never signalled.
pub async fn wait_or_kill(pid: u32, start_time: u64, grace: Duration) {
    if pid == 0 {
        return;
    }
    const POLL: Duration = Duration::from_millis(20);
    let deadline = tokio::time::Instant::now() + grace;
    while podsandbox::fsutil::process_matches(pid, start_time) {
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    if !podsandbox::fsutil::process_matches(pid, start_time) {
        return;
    }
    warn!(pid, "killing pod process");
    if let Err(err) = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    ) {
        warn!(pid, error = %chain(&err), "killing pod process failed");
        return;
    }
    // After a daemon restart the process is not our child: its parent reaps it, and until then it is a zombie,
    // which `process_matches` already counts as gone.
    for _ in 0..100 {
        if !podsandbox::fsutil::process_matches(pid, start_time) {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
    warn!(pid, "pod process still present 2 s after SIGKILL");
}
