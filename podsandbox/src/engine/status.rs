//! How an instance ended, expressed like a process exit: an exit code, a reason and a message.
//!
//! Exit codes follow what a Linux process (and the `wasmtime` CLI) would give, so `kubectl` shows familiar
//! values:
//! - the guest's own exit (`proc_exit`, `wasi:cli/exit`, `wasi:cli/run` result): its code (`Err` → 1);
//! - a trap: 134, 128 + SIGABRT, as `wasmtime run` exits on a trap;
//! - memory limit exceeded: 137 with reason `OOMKilled`, as after the kernel OOM killer's SIGKILL;
//! - stopped by the runtime: 137, as after SIGKILL (WASI has no signals, so a stop is immediate);
//! - the program could not be started (a preopen, link or instantiation error, no `_start`): 126, the shell's
//!   and Docker's "cannot invoke" code, distinct from any exit the program chose;
//! - any other error raised by a host call while running: 1, as the `wasmtime` CLI exits.

use std::fmt::Write as _;

use wasmtime::{Trap, WasmBacktrace};
use wasmtime_wasi::I32Exit;

use super::limits::Exceeded;

/// Exit code of a trapped instance: 128 + SIGABRT.
pub const TRAP_EXIT_CODE: i32 = 134;
/// Exit code of a killed instance (stop or OOM): 128 + SIGKILL.
pub const KILLED_EXIT_CODE: i32 = 137;
/// Exit code when the program could not be started at all.
pub const NOT_STARTED_EXIT_CODE: i32 = 126;
/// Exit code of a run ended by a host error that is neither a trap nor an exit.
pub const HOST_ERROR_EXIT_CODE: i32 = 1;

/// The message prefix of a program that could not be started.
const NOT_STARTED: &str = "could not start the program";
/// The longest message kept; the kubelet shows it in the container status.
const MAX_MESSAGE: usize = 1024;
/// Wasm frames shown after a trap message.
const MAX_FRAMES: usize = 8;

/// Why an instance ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitReason {
    /// Exited with code 0.
    Completed,
    /// Exited with another code, trapped, or could not start.
    Error,
    /// Exceeded its memory limit.
    OomKilled,
    /// Stopped by the runtime.
    Killed,
}

/// An instance's end, as the pod process reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitStatus {
    pub code: i32,
    pub reason: ExitReason,
    pub message: String,
}

impl ExitStatus {
    /// The guest exited with `code` of its own accord.
    pub fn exited(code: i32, message: impl Into<String>) -> ExitStatus {
        let reason = if code == 0 {
            ExitReason::Completed
        } else {
            ExitReason::Error
        };
        ExitStatus {
            code,
            reason,
            message: message.into(),
        }
    }

    pub fn killed() -> ExitStatus {
        ExitStatus {
            code: KILLED_EXIT_CODE,
            reason: ExitReason::Killed,
            message: "stopped by the runtime".to_string(),
        }
    }

    pub fn oom_killed(exceeded: Exceeded) -> ExitStatus {
        ExitStatus {
            code: KILLED_EXIT_CODE,
            reason: ExitReason::OomKilled,
            message: format!(
                "memory limit of {} bytes exceeded (requested {} bytes)",
                exceeded.limit, exceeded.requested
            ),
        }
    }

    /// The program could not be started, e.g. a preopen directory could not be opened.
    pub fn not_started(error: &(dyn std::error::Error + 'static)) -> ExitStatus {
        ExitStatus {
            code: NOT_STARTED_EXIT_CODE,
            reason: ExitReason::Error,
            message: truncate(format!("{NOT_STARTED}: {}", chain(error))),
        }
    }
}

/// Where a wasmtime error came from, which decides the code of errors that are neither exits nor traps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Instantiating (linking imports, running the start function) and finding the entry point.
    Instantiate,
    /// Running the entry point.
    Run,
}

/// Maps a wasmtime error to an exit status. `exceeded` is what the store's memory limiter recorded: a refused
/// growth traps with the limiter's error, and the record is what makes it an OOM kill.
pub fn from_error(error: &wasmtime::Error, stage: Stage, exceeded: Option<Exceeded>) -> ExitStatus {
    if let Some(exit) = error.downcast_ref::<I32Exit>() {
        return ExitStatus::exited(exit.0, "");
    }
    if let Some(exceeded) = exceeded {
        return ExitStatus::oom_killed(exceeded);
    }
    if let Some(trap) = error.downcast_ref::<Trap>() {
        let mut message = trap.to_string();
        if let Some(bt) = error.downcast_ref::<WasmBacktrace>() {
            message.push_str(&backtrace_summary(bt));
        }
        return ExitStatus {
            code: TRAP_EXIT_CODE,
            reason: ExitReason::Error,
            message: truncate(message),
        };
    }
    let (code, what) = match stage {
        Stage::Instantiate => (NOT_STARTED_EXIT_CODE, NOT_STARTED),
        Stage::Run => (HOST_ERROR_EXIT_CODE, "host error while running"),
    };
    ExitStatus {
        code,
        reason: ExitReason::Error,
        message: truncate(format!("{what}: {}", wasmtime_chain(error))),
    }
}

/// `"; wasm backtrace: f <- g <- ..."`, innermost frame first.
fn backtrace_summary(bt: &WasmBacktrace) -> String {
    let frames = bt.frames();
    if frames.is_empty() {
        return String::new();
    }
    let mut out = String::from("; wasm backtrace: ");
    for (i, frame) in frames.iter().take(MAX_FRAMES).enumerate() {
        if i > 0 {
            out.push_str(" <- ");
        }
        match frame.func_name() {
            Some(name) => out.push_str(name),
            None => {
                let _ = write!(out, "<wasm function {}>", frame.func_index());
            }
        }
    }
    if frames.len() > MAX_FRAMES {
        let _ = write!(out, " <- ... ({} more)", frames.len() - MAX_FRAMES);
    }
    out
}

/// An error and its causes joined by ": ".
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut next = Some(error);
    while let Some(e) = next {
        parts.push(e.to_string());
        next = e.source();
    }
    parts.join(": ")
}

/// A wasmtime error and its causes joined by ": ", without wasmtime's multi-line backtrace context (which is
/// attached as a context layer of the chain).
fn wasmtime_chain(error: &wasmtime::Error) -> String {
    let backtrace = error
        .downcast_ref::<WasmBacktrace>()
        .map(ToString::to_string);
    error
        .chain()
        .map(|e| e.to_string())
        .filter(|s| Some(s) != backtrace.as_ref())
        .collect::<Vec<_>>()
        .join(": ")
}

fn truncate(mut message: String) -> String {
    if message.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str("...");
    }
    message
}
