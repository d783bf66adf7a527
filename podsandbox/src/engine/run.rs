//! Running one container: a fresh store, instantiation, the entry point, and the race against a stop.
//!
//! Every run yields to the async executor at each epoch tick, so a guest in a tight loop still lets its
//! future be polled; `run` races that future against `stop` and, when `stop` wins, drops it, which unwinds the
//! guest wherever it is (in wasm at a yield, or inside an async host call such as a `poll_oneoff` sleep).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use wasmtime::Store;
use wasmtime_wasi::p2::bindings::Command;

use super::http::{self, HttpServing};
use super::limits::Exceeded;
use super::status::{self, ExitStatus, Stage};
use super::usage::{CpuTimed, Usage};
use super::wasi::{self, ComponentState, ModuleState};
use super::{Engine, GuestStdin, Program};
use crate::logs::LogSink;

/// Epoch ticks a guest may run before yielding to the executor (see `config::EPOCH_TICK`).
const TICKS_PER_SLICE: u64 = 1;

/// A host directory made visible to the guest.
#[derive(Clone, Debug)]
pub struct Preopen {
    pub host: PathBuf,
    /// The guest path; the container root is `/`.
    pub guest: String,
    pub read_only: bool,
}

/// Everything a container run needs besides the program.
#[derive(Debug)]
pub struct RunSpec {
    /// The full argv, `argv[0]` included, passed unchanged.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub preopens: Vec<Preopen>,
    /// Standard input; `None` leaves it closed (containers; an exec without stdin).
    pub stdin: Option<GuestStdin>,
    pub stdout: LogSink,
    pub stderr: LogSink,
    /// Bytes allowed across all linear memories of the instance; `None` for no limit.
    pub memory_limit: Option<u64>,
    /// Working directory given to components; core modules (WASI preview 1) always start at "/".
    pub cwd: Option<String>,
    /// Where the run's CPU time and memory are counted (read by the stats RPC while it runs).
    pub usage: Arc<Usage>,
    /// TCP ports bound for a core module and handed to it as pre-opened listening sockets (`LISTEN_FDS`, see
    /// `p1_sockets`); bound when the run starts, closed when it ends. Components bind their own through
    /// `wasi:sockets` and ignore this.
    pub listen_ports: Vec<u16>,
    /// Runs once the guest's directories and sockets are open and before the guest starts, on the thread that
    /// will run it (the pod gives the thread the container's identity here: the pod process opens the
    /// container's files as root, as a runtime sets up a container's mounts before the process starts, and
    /// the guest then reaches them with its own identity only). An error means the program does not start.
    pub before_guest: Option<BeforeGuest>,
    /// Set for a container whose component exports `wasi:http/incoming-handler`: the pod serves it over HTTP
    /// on its listen ports (see `http`) instead of running `wasi:cli/run`.
    pub http: Option<HttpServing>,
}

/// The hook of [`RunSpec::before_guest`].
pub struct BeforeGuest(pub Box<dyn FnOnce() -> Result<(), BeforeGuestError> + Send + Sync>);

/// Why the hook refused to let the guest start.
pub type BeforeGuestError = Box<dyn std::error::Error + Send + Sync>;

impl std::fmt::Debug for BeforeGuest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BeforeGuest(..)")
    }
}

/// Runs the hook, if any; `Some(status)` when the guest must not start.
pub(crate) fn before_guest(hook: Option<BeforeGuest>) -> Option<ExitStatus> {
    let hook = hook?;
    match (hook.0)() {
        Ok(()) => None,
        Err(e) => Some(ExitStatus::not_started(&*e)),
    }
}

/// Runs `program` to completion, or until `stop` resolves, and reports how it ended. Output still buffered in
/// the sinks (a last line without newline) is written out before returning.
pub async fn run(
    engine: &Engine,
    program: &Program,
    mut spec: RunSpec,
    stop: impl Future<Output = ()>,
) -> ExitStatus {
    let (stdout, stderr) = (spec.stdout.clone(), spec.stderr.clone());
    let usage = Arc::clone(&spec.usage);
    let hook = spec.before_guest.take();
    let instance = async move {
        match program {
            Program::Module(module) => run_module(engine, module, &spec, hook, stop).await,
            Program::Component(component) => match spec.http.take() {
                Some(http) => http::server::serve(component, spec, http, hook, stop).await,
                None => run_component(engine, component, &spec, hook, stop).await,
            },
        }
    };
    // Instantiation counts as the container's CPU time (as a process's startup does); compilation at create
    // does not. The store is gone by the time the run returns, so its memory is too.
    let status = CpuTimed::new(instance, Arc::clone(&usage)).await;
    usage.set_memory(0);
    stdout.finish();
    stderr.finish();
    tracing::debug!(code = status.code, reason = ?status.reason, message = %status.message, "instance ended");
    status
}

async fn run_module(
    engine: &Engine,
    module: &wasmtime::Module,
    spec: &RunSpec,
    hook: Option<BeforeGuest>,
    stop: impl Future<Output = ()>,
) -> ExitStatus {
    let state = match wasi::module_state(spec) {
        Ok(state) => state,
        Err(e) => return ExitStatus::not_started(&e),
    };
    if let Some(refused) = before_guest(hook) {
        return refused;
    }
    let mut store = Store::new(engine.wasmtime(), state);
    store.limiter(|s: &mut ModuleState| &mut s.limiter);
    arm_epoch(&mut store);

    let outcome = {
        let linker = &engine.linkers().module;
        let store = &mut store;
        let guest = async move {
            let instance = linker
                .instantiate_async(&mut *store, module)
                .await
                .map_err(|e| (Stage::Instantiate, e))?;
            let start = instance
                .get_typed_func::<(), ()>(&mut *store, "_start")
                .map_err(|e| (Stage::Instantiate, e))?;
            start
                .call_async(&mut *store, ())
                .await
                .map_err(|e| (Stage::Run, e))
        };
        tokio::select! {
            biased;
            () = stop => None,
            result = guest => Some(result.map(|()| ExitStatus::exited(0, ""))),
        }
    };
    finish(outcome, store.data().limiter.exceeded())
}

async fn run_component(
    engine: &Engine,
    component: &wasmtime::component::Component,
    spec: &RunSpec,
    hook: Option<BeforeGuest>,
    stop: impl Future<Output = ()>,
) -> ExitStatus {
    let state = match wasi::component_state(spec) {
        Ok(state) => state,
        Err(e) => return ExitStatus::not_started(&e),
    };
    if let Some(refused) = before_guest(hook) {
        return refused;
    }
    let mut store = Store::new(engine.wasmtime(), state);
    store.limiter(|s: &mut ComponentState| &mut s.limiter);
    arm_epoch(&mut store);

    let outcome = {
        let linker = &engine.linkers().component;
        let store = &mut store;
        let guest = async move {
            let command = Command::instantiate_async(&mut *store, component, linker)
                .await
                .map_err(|e| (Stage::Instantiate, e))?;
            command
                .wasi_cli_run()
                .call_run(&mut *store)
                .await
                .map_err(|e| (Stage::Run, e))
        };
        tokio::select! {
            biased;
            () = stop => None,
            result = guest => Some(result.map(|ran| match ran {
                Ok(()) => ExitStatus::exited(0, ""),
                Err(()) => ExitStatus::exited(1, "wasi:cli/run returned an error"),
            })),
        }
    };
    finish(outcome, store.data().limiter.exceeded())
}

/// Makes compiled code yield to the executor at every tick from now on, so stops and other tasks get a turn.
pub(crate) fn arm_epoch<T>(store: &mut Store<T>) {
    store.set_epoch_deadline(TICKS_PER_SLICE);
    store.epoch_deadline_async_yield_and_update(TICKS_PER_SLICE);
}

/// `None` means `stop` won the race.
fn finish(
    outcome: Option<Result<ExitStatus, (Stage, wasmtime::Error)>>,
    exceeded: Option<Exceeded>,
) -> ExitStatus {
    match outcome {
        None => ExitStatus::killed(),
        Some(Ok(status)) => status,
        Some(Err((stage, error))) => status::from_error(&error, stage, exceeded),
    }
}
