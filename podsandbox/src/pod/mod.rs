//! The pod process: `wasm-cri pod`, one per pod sandbox.
//!
//! Start-up order matters: the bootstrap message is read and the pod's network namespace joined while the
//! process is still single-threaded (`setns(CLONE_NEWNET)` affects only the calling thread, and every thread
//! started afterwards inherits it). Only then is the tokio runtime built, the engine created and the socket
//! bound. The process puts itself in a new session so it survives the daemon's exit and its terminal.

mod attach;
mod bootstrap;
mod containers;
mod exec;
mod identity;
mod instance;
mod mounts;
mod procview;
mod programs;
mod resolver;
mod service;
mod sysctls;

use std::process::ExitCode;

use proto::pod::{Bootstrap, BootstrapReply, PROTOCOL_VERSION};
use tracing::{error, info};

use crate::error_chain;

pub use bootstrap::{read_message, write_message};
pub use containers::exit_record_path;
pub(crate) use containers::release_compiler_memory;

/// Entry point of `wasm-cri pod`. Must be called before any other thread exists.
pub fn main() -> ExitCode {
    // A new session: no controlling terminal, not in the daemon's process group, so a Ctrl-C or the daemon's
    // group being signalled does not take the pod down. Fails only if we already lead a group: harmless.
    let _ = nix::unistd::setsid();

    let boot: Bootstrap = match read_message(std::io::stdin().lock()) {
        Ok(b) => b,
        Err(err) => {
            reply_error(format!("reading bootstrap message from stdin: {err}"));
            return ExitCode::FAILURE;
        }
    };
    if boot.protocol_version != PROTOCOL_VERSION {
        reply_error(format!(
            "pod protocol version mismatch: daemon speaks {}, this pod binary speaks {PROTOCOL_VERSION}",
            boot.protocol_version
        ));
        return ExitCode::FAILURE;
    }
    if !boot.netns_path.is_empty()
        && let Err(err) = bootstrap::join_netns(&boot.netns_path)
    {
        reply_error(format!(
            "joining network namespace {}: {err}",
            boot.netns_path
        ));
        return ExitCode::FAILURE;
    }

    if boot.private_ipc
        && let Err(err) = sysctls::enter_private_ipc()
    {
        // Without root there are no namespaces at all (the daemon reports the network not ready): run with the
        // node's IPC namespace rather than not at all, as the mount namespace falls back below.
        if nix::unistd::geteuid().is_root() || !boot.sysctls.is_empty() {
            reply_error(error_chain(&err));
            return ExitCode::FAILURE;
        }
        eprintln!("wasm-cri pod: no IPC namespace of its own ({err}); sharing the node's");
    }
    if let Err(err) = sysctls::apply(&boot.sysctls) {
        reply_error(error_chain(&err));
        return ExitCode::FAILURE;
    }

    // Before any thread: read-only mounts are made in a namespace of our own (see `mounts`).
    if let Err(err) = mounts::enter_private_namespace() {
        eprintln!(
            "wasm-cri pod: no private mount namespace ({err}); read-only directories fall back to WASI checks"
        );
    } else if let Err(err) = resolver::use_pod_files(std::path::Path::new(&boot.state_dir)) {
        // wasi:sockets name lookups of components would silently use the node's DNS settings instead.
        reply_error(error_chain(&err));
        return ExitCode::FAILURE;
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("pod-worker")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            reply_error(format!("starting the async runtime: {err}"));
            return ExitCode::FAILURE;
        }
    };
    let pod_id = boot.pod_id.clone();
    match runtime.block_on(service::serve(boot)) {
        Ok(()) => {
            info!(pod_id = %pod_id, "pod process exiting");
            ExitCode::SUCCESS
        }
        Err(err) => {
            error!(pod_id = %pod_id, error = %err, "pod process failed");
            ExitCode::FAILURE
        }
    }
}

/// Best effort: tells the daemon why start-up failed (it may already be gone).
fn reply_error(message: String) {
    eprintln!("wasm-cri pod: {message}");
    let reply = BootstrapReply {
        protocol_version: PROTOCOL_VERSION,
        pid: crate::fsutil::node_pid(),
        start_time: 0,
        error: message,
    };
    let _ = write_message(std::io::stdout().lock(), &reply);
}
