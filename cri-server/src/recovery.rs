//! After a restart: every sandbox that was Ready is checked against its pod process. A live one (same pid and
//! start time, same protocol version, same pod id) is adopted and watched again; a dead one is marked
//! NotReady and its containers Exited (with the exit codes its pod process recorded before dying). A live one
//! that cannot be adopted (its socket is gone, it speaks another protocol version, it answers for another pod)
//! is killed first: nothing could stop it later, and it would keep the pod's containers running unsupervised
//! while the kubelet, seeing the sandbox NotReady, starts their replacements.

use std::sync::Arc;

use tracing::{info, warn};

use crate::error::chain;
use crate::runtime::Runtime;
use crate::state::SandboxState;
use crate::supervisor;

/// Reconnects to every pod process. Runs before the CRI socket is served, so no call sees half-recovered
/// state.
pub async fn recover(rt: &Arc<Runtime>) {
    let sandboxes: Vec<_> = rt
        .store
        .sandboxes
        .iter()
        .map(|s| Arc::clone(s.value()))
        .collect();
    let (mut adopted, mut dead) = (0, 0);
    for sb in sandboxes {
        if sb.state() != SandboxState::Ready {
            continue;
        }
        let rec = sb.record();
        if !podsandbox::fsutil::process_matches(rec.pid, rec.start_time) {
            supervisor::mark_dead(rt, &sb, rec.pid);
            dead += 1;
            continue;
        }
        match podsandbox::client::reconnect(&sb.meta.socket, &sb.meta.id, rec.pid, rec.start_time)
            .await
        {
            Ok(client) => {
                sb.set_client(Some(client));
                supervisor::watch(Arc::clone(rt), sb, None);
                adopted += 1;
            }
            Err(err) => {
                warn!(pod_id = %sb.meta.id, pid = rec.pid, error = %chain(&err), "cannot adopt pod process; killing it");
                supervisor::wait_or_kill(rec.pid, rec.start_time, std::time::Duration::ZERO).await;
                let message = format!(
                    "the pod process (pid {}) could not be adopted after a wasm-cri restart and was killed: {}",
                    rec.pid,
                    chain(&err)
                );
                supervisor::mark_gone(rt, &sb, message);
                dead += 1;
            }
        }
    }
    for c in rt.store.containers.iter() {
        if !rt.store.sandboxes.contains_key(&c.meta.pod_id) {
            warn!(container_id = %c.meta.id, pod_id = %c.meta.pod_id, "container record without its pod sandbox");
        }
    }
    info!(adopted, dead, "recovery done");
}
