//! The container table of one pod process: each container is a compiled program plus, while it runs, one
//! wasmtime instance driven by its own tokio task.
//!
//! ```text
//!   create ──► CREATED ──start──► RUNNING ──(exit | trap | OOM | stop)──► EXITED ──remove──► (gone)
//!                 └──────────────────────────remove────────────────────────────────────────►
//! ```
//! Every transition is broadcast as an event. Exits are also written to `<state_dir>/containers/<id>.exit`
//! (atomically), so a daemon that restarts after this process died can still report exit codes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use proto::pod::{ContainerSpec, ContainerState, ContainerStatus, ContainerUsage, StatsReply};
use tokio::sync::{broadcast, oneshot, watch};
use tonic::Status;
use tracing::{info, warn};

use crate::engine::{self, Engine, ExitReason, Preopen, Program, RunSpec, Usage};
use crate::error_chain;
use crate::fsutil::atomic_write;
use crate::logs::{LogFile, LogSink, Stream};

use super::instance::{self, Launch};
use super::mounts::{self, ContainerMounts};
use super::procview::ProcView;
use super::programs::{FileKey, Programs};

struct Entry {
    spec: ContainerSpec,
    program: Program,
    log: LogFile,
    status: ContainerStatus,
    /// Present while the instance runs; sending (or dropping) it interrupts the instance.
    stop: Option<oneshot::Sender<()>>,
    /// Present while a wasi:http handler serves; sending it starts the drain (see `engine::http`).
    drain: Option<oneshot::Sender<()>>,
    /// Turns true once the instance has exited and `status` says so.
    exited: watch::Receiver<bool>,
    /// CPU time and memory of the instance, updated by the task running it.
    usage: Arc<Usage>,
    /// Kernel read-only mounts made for the container's directories; unmounted when the entry goes.
    _mounts: ContainerMounts,
    /// The container's `/proc` (when the pod process can make one); unmounted when the entry goes.
    proc_view: Option<ProcView>,
    /// The instance's output, raw, for attached clients.
    output: broadcast::Sender<(Stream, bytes::Bytes)>,
    /// The write end of the instance's stdin while it has one (CRI `stdin`); `None` inside once it ended.
    stdin: Option<AttachStdin>,
}

/// The write end of a container's stdin, shared by attached clients.
pub type AttachStdin = Arc<tokio::sync::Mutex<Option<tokio::io::DuplexStream>>>;

/// What an attached client connects to: the container's output from now on, its stdin (if any) and whether
/// that ends with the client's, and a receiver that turns true when the instance has exited.
pub struct AttachTarget {
    pub output: broadcast::Receiver<(Stream, bytes::Bytes)>,
    pub stdin: Option<AttachStdin>,
    pub stdin_once: bool,
    pub exited: watch::Receiver<bool>,
}

/// Bytes of stdin buffered for a container that is not reading.
const STDIN_BUFFER: usize = 64 * 1024;

/// All containers of this pod.
pub struct Containers {
    engine: Engine,
    state_dir: PathBuf,
    /// Programs compiled for creates and execs, shared by all containers of the pod.
    programs: Programs,
    table: Mutex<HashMap<String, Entry>>,
    events: broadcast::Sender<ContainerStatus>,
}

impl Containers {
    pub fn new(engine: Engine, state_dir: PathBuf) -> Arc<Containers> {
        let (events, _) = broadcast::channel(256);
        Arc::new(Containers {
            engine,
            state_dir,
            programs: Programs::default(),
            table: Mutex::new(HashMap::new()),
            events,
        })
    }

    pub fn subscribe(&self) -> broadcast::Receiver<ContainerStatus> {
        self.events.subscribe()
    }

    fn table(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding the lock leaves plain data behind, still consistent enough to serve.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, status: &ContainerStatus) {
        // No subscriber (daemon not connected) is fine: it catches up with ListContainers.
        let _ = self.events.send(status.clone());
    }

    /// Compiles the container's Wasm and registers it as CREATED. Creating an existing id returns its status.
    pub async fn create(&self, mut spec: ContainerSpec) -> Result<ContainerStatus, Status> {
        if let Some(e) = self.table().get(&spec.id) {
            return Ok(e.status.clone());
        }
        let wasm_path = Path::new(&spec.wasm_path);
        let precompiled = match spec.precompiled_path.as_str() {
            "" => None,
            artifact => {
                self.programs
                    .load_precompiled(&self.engine, Path::new(artifact), wasm_path, &spec.id)
                    .await
            }
        };
        let program = match precompiled {
            Some(program) => program,
            None => self.program(wasm_path).await?,
        };
        let (preopens, mounts) = mounts::prepare(
            &self.state_dir.join("mnt").join(&spec.id),
            &spec.preopens,
            mounts::PathRules {
                masked: &spec.masked_paths,
                read_only: &spec.readonly_paths,
            },
        )
        .map_err(|e| Status::failed_precondition(error_chain(&e)))?;
        spec.preopens = preopens;
        let proc_view = if mounts::private_mounts() {
            let view = ProcView::create(&self.state_dir.join("proc").join(&spec.id))
                .map_err(|e| Status::internal(error_chain(&e)))?;
            spec.preopens.push(proto::pod::Preopen {
                host_path: view.guest_root().display().to_string(),
                guest_path: "/proc".into(),
                // Read-only by the kernel: a guest's write gets EROFS, as on /proc/sys in a Linux container.
                read_only: false,
                recursive_read_only: false,
            });
            Some(view)
        } else {
            None
        };
        let log_path = PathBuf::from(&spec.log_path);
        if let Some(dir) = log_path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                Status::internal(format!("creating log directory {}: {e}", dir.display()))
            })?;
        }
        let log = LogFile::open(&log_path).map_err(|e| {
            Status::internal(format!("opening log file {}: {e}", log_path.display()))
        })?;
        let status = ContainerStatus {
            id: spec.id.clone(),
            state: ContainerState::Created as i32,
            ..Default::default()
        };
        let (_tx, exited) = watch::channel(false);
        let mut table = self.table();
        let entry = table.entry(spec.id.clone()).or_insert(Entry {
            spec,
            program,
            log,
            status,
            stop: None,
            drain: None,
            exited,
            usage: Usage::new(),
            _mounts: mounts,
            proc_view,
            output: broadcast::channel(256).0,
            stdin: None,
        });
        let status = entry.status.clone();
        drop(table);
        self.publish(&status);
        Ok(status)
    }

    /// The compiled program at `path`: from the pod's cache when that file was compiled before, else compiled
    /// now (on the blocking pool: compiling is CPU-heavy) and cached.
    pub async fn program(&self, path: &Path) -> Result<Program, Status> {
        let key = FileKey::of(path).map_err(|e| {
            Status::failed_precondition(format!("reading program {}: {e}", path.display()))
        })?;
        if let Some(program) = self.programs.get(&key) {
            return Ok(program);
        }
        let engine = self.engine.clone();
        let owned = path.to_path_buf();
        let program = tokio::task::spawn_blocking(move || {
            let program = engine.load(&owned);
            release_compiler_memory();
            program
        })
        .await
        .map_err(|e| Status::internal(format!("compiling task failed: {e}")))?
        .map_err(|e| match e {
            engine::EngineError::NotWasm { .. } => Status::failed_precondition(error_chain(&e)),
            _ => Status::invalid_argument(error_chain(&e)),
        })?;
        self.programs.insert(key, program.clone());
        Ok(program)
    }

    /// What an exec in container `id` runs with: the container's spec (environment, directories, limits) and
    /// a receiver that turns true when the container's own instance ends (its execs end with it, as processes
    /// in a Linux container die with its init). Only a running container can be exec'd into.
    pub fn exec_target(&self, id: &str) -> Result<(ContainerSpec, watch::Receiver<bool>), Status> {
        self.with_running(
            id,
            "commands can only be executed in a running container",
            |e| (e.spec.clone(), e.exited.clone()),
        )
    }

    /// Applies `f` to container `id` if it is running; else NotFound, or FailedPrecondition ending in `rule`.
    fn with_running<T>(
        &self,
        id: &str,
        rule: &str,
        f: impl FnOnce(&Entry) -> T,
    ) -> Result<T, Status> {
        let table = self.table();
        let entry = table
            .get(id)
            .ok_or_else(|| Status::not_found(format!("container {id} is not in this pod")))?;
        if entry.status.state != ContainerState::Running as i32 {
            return Err(Status::failed_precondition(format!(
                "container {id} is {}; {rule}",
                state_name(entry.status.state)
            )));
        }
        Ok(f(entry))
    }

    /// What an attach to container `id` connects to; only a running container can be attached to.
    pub fn attach_target(&self, id: &str) -> Result<AttachTarget, Status> {
        self.with_running(id, "one can only attach to a running container", |e| {
            AttachTarget {
                output: e.output.subscribe(),
                stdin: e.stdin.clone(),
                stdin_once: e.spec.stdin_once,
                exited: e.exited.clone(),
            }
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Starts a CREATED container's instance.
    pub fn start(self: &Arc<Self>, id: &str) -> Result<ContainerStatus, Status> {
        let mut table = self.table();
        let entry = table
            .get_mut(id)
            .ok_or_else(|| Status::not_found(format!("container {id} is not in this pod")))?;
        if entry.status.state != ContainerState::Created as i32 {
            return Err(Status::failed_precondition(format!(
                "container {id} is {}, only a created container can be started",
                state_name(entry.status.state)
            )));
        }
        let mut spec = run_spec(
            &entry.spec,
            &entry.log,
            Arc::clone(&entry.usage),
            &entry.output,
        );
        if entry.spec.stdin {
            let (writer, reader) = tokio::io::duplex(STDIN_BUFFER);
            entry.stdin = Some(Arc::new(tokio::sync::Mutex::new(Some(writer))));
            spec.stdin = Some(engine::GuestStdin::new(reader, false));
        }
        entry.drain = serve_http(&self.engine, &entry.program, &entry.spec, &mut spec);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (exited_tx, exited_rx) = watch::channel(false);
        entry.stop = Some(stop_tx);
        entry.exited = exited_rx;
        entry.status.state = ContainerState::Running as i32;
        entry.status.started_at = now_nanos();
        let status = entry.status.clone();
        let program = entry.program.clone();
        let launch = Launch {
            name: thread_name("ctr", id),
            run_as: entry.spec.run_as.clone(),
            status_file: entry
                .proc_view
                .as_ref()
                .and_then(|v| match v.status_file() {
                    Ok(f) => Some(f),
                    Err(error) => {
                        warn!(container_id = %id, %error, "no /proc/self/status for the container");
                        None
                    }
                }),
            program_name: program_name(&entry.spec.args),
        };
        drop(table);
        self.publish(&status);
        info!(container_id = %id, "container started");

        let this = Arc::clone(self);
        let id = id.to_string();
        let stop = async {
            // Either an explicit stop or the sender being dropped (container forgotten) ends the instance.
            let _ = stop_rx.await;
        };
        let running = instance::run(this.engine.clone(), program, spec, stop, launch);
        tokio::spawn(async move {
            let exit = running.await;
            this.finish(&id, exit);
            let _ = exited_tx.send(true);
        });
        Ok(status)
    }

    fn finish(&self, id: &str, exit: engine::ExitStatus) {
        let reason = match exit.reason {
            ExitReason::Completed => "Completed",
            ExitReason::OomKilled => "OOMKilled",
            ExitReason::Error | ExitReason::Killed => "Error",
        };
        let status = {
            let mut table = self.table();
            let Some(entry) = table.get_mut(id) else {
                return;
            };
            entry.stop = None;
            entry.drain = None;
            entry.status.state = ContainerState::Exited as i32;
            entry.status.finished_at = now_nanos();
            entry.status.exit_code = exit.code;
            entry.status.reason = reason.to_string();
            entry.status.message = exit.message;
            entry.status.clone()
        };
        info!(container_id = %id, exit_code = status.exit_code, reason = %status.reason, "container exited");
        if let Err(err) = atomic_write(
            &self.exit_record(id),
            &prost::Message::encode_to_vec(&status),
        ) {
            warn!(container_id = %id, error = %err, "could not persist exit record");
        }
        self.publish(&status);
    }

    /// Interrupts a running container and waits for its exit; a created or exited container is left as is.
    ///
    /// WASI gives a guest no way to receive a signal, so there is nothing to deliver first: the stop is the
    /// equivalent of SIGTERM's default action, an immediate end (exit code 137). A wasi:http handler is the
    /// exception, since the pod itself is its server: it drains for up to `grace` (exit 0), then is
    /// interrupted like any other.
    pub async fn stop(&self, id: &str, grace: Duration) -> Result<ContainerStatus, Status> {
        let (drain, mut exited) = {
            let mut table = self.table();
            let entry = table
                .get_mut(id)
                .ok_or_else(|| Status::not_found(format!("container {id} is not in this pod")))?;
            (entry.drain.take(), entry.exited.clone())
        };
        if let Some(drain) = drain
            && drain.send(()).is_ok()
        {
            info!(container_id = %id, grace_seconds = grace.as_secs(), "draining wasi:http requests");
            let _ = tokio::time::timeout(grace, exited.wait_for(|done| *done)).await;
        }
        let stop = self.table().get_mut(id).and_then(|e| e.stop.take());
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        if self.status(id).map(|s| s.state) == Some(ContainerState::Running as i32) {
            let _ = exited.wait_for(|done| *done).await;
        }
        self.status(id)
            .ok_or_else(|| Status::not_found(format!("container {id} is not in this pod")))
    }

    /// Forgets a container that is not running. Unknown ids succeed (removal is idempotent).
    pub fn remove(&self, id: &str) -> Result<(), Status> {
        let mut table = self.table();
        if let Some(entry) = table.get(id)
            && entry.status.state == ContainerState::Running as i32
        {
            return Err(Status::failed_precondition(format!(
                "container {id} is running; stop it before removing it"
            )));
        }
        table.remove(id);
        drop(table);
        let _ = std::fs::remove_file(self.exit_record(id));
        Ok(())
    }

    /// Reopens the log file of a running container, so output after a rotation lands in a new file.
    pub fn reopen_log(&self, id: &str) -> Result<(), Status> {
        let table = self.table();
        let entry = table
            .get(id)
            .ok_or_else(|| Status::not_found(format!("container {id} is not in this pod")))?;
        if entry.status.state != ContainerState::Running as i32 {
            return Err(Status::failed_precondition(format!(
                "container {id} is {}; only a running container's log can be reopened",
                state_name(entry.status.state)
            )));
        }
        entry
            .log
            .reopen()
            .map_err(|e| Status::internal(format!("reopening log {}: {e}", entry.spec.log_path)))
    }

    pub fn status(&self, id: &str) -> Option<ContainerStatus> {
        self.table().get(id).map(|e| e.status.clone())
    }

    pub fn list(&self) -> Vec<ContainerStatus> {
        self.table().values().map(|e| e.status.clone()).collect()
    }

    /// Current usage of every container, read from the counters the running instances update.
    pub fn stats(&self) -> StatsReply {
        let containers = self
            .table()
            .values()
            .map(|e| ContainerUsage {
                id: e.status.id.clone(),
                cpu_nanos: e.usage.cpu_nanos(),
                memory_bytes: e.usage.memory_bytes(),
                state: e.status.state,
            })
            .collect();
        StatsReply {
            timestamp: now_nanos(),
            containers,
        }
    }

    /// Stops every running container (used at shutdown).
    pub async fn stop_all(&self) {
        let ids: Vec<String> = self.table().keys().cloned().collect();
        for id in ids {
            let _ = self.stop(&id, Duration::ZERO).await;
        }
    }

    fn exit_record(&self, id: &str) -> PathBuf {
        exit_record_path(&self.state_dir, id)
    }
}

/// Cranelift allocates a lot while compiling, on several threads; glibc keeps what was freed in per-thread
/// arenas, which would stay resident in an otherwise idle pod process for its whole life. Give it back.
pub(crate) fn release_compiler_memory() {
    // SAFETY: malloc_trim only walks glibc's own heap bookkeeping; it is safe to call at any time from any
    // thread and touches no memory that Rust still uses.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Where the pod process records a container's exit.
pub fn exit_record_path(state_dir: &Path, id: &str) -> PathBuf {
    state_dir.join("containers").join(format!("{id}.exit"))
}

/// A thread name within Linux's 15 bytes: a kind and the start of the container id.
pub fn thread_name(kind: &str, id: &str) -> String {
    format!("{kind}-{}", id.get(..10).unwrap_or(id))
}

/// What `/proc/self/status` calls the program: the base name of argv[0], at most 15 bytes as in the kernel.
pub fn program_name(args: &[String]) -> String {
    let argv0 = args.first().map(String::as_str).unwrap_or_default();
    let base = argv0.rsplit('/').next().unwrap_or(argv0);
    let mut end = base.len().min(15);
    while !base.is_char_boundary(end) {
        end -= 1;
    }
    base[..end].to_string()
}

fn run_spec(
    spec: &ContainerSpec,
    log: &LogFile,
    usage: Arc<Usage>,
    output: &broadcast::Sender<(Stream, bytes::Bytes)>,
) -> RunSpec {
    RunSpec {
        stdin: None,
        stdout: LogSink::with_tee(log.clone(), Stream::Stdout, output.clone()),
        stderr: LogSink::with_tee(log.clone(), Stream::Stderr, output.clone()),
        // The container's own instance gets the listeners; an exec, like a second process, does not.
        listen_ports: spec
            .listen_ports
            .iter()
            .filter_map(|p| u16::try_from(*p).ok())
            .collect(),
        ..base_run_spec(spec, usage)
    }
}

/// The parts of a run that come from the container's spec (an exec shares them); stdio is closed.
pub fn base_run_spec(spec: &ContainerSpec, usage: Arc<Usage>) -> RunSpec {
    RunSpec {
        args: spec.args.clone(),
        env: spec
            .env
            .iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv.clone(), String::new()),
            })
            .collect(),
        preopens: spec
            .preopens
            .iter()
            .map(|p| Preopen {
                host: PathBuf::from(&p.host_path),
                guest: p.guest_path.clone(),
                read_only: p.read_only,
            })
            .collect(),
        stdin: None,
        stdout: LogSink::memory(0),
        stderr: LogSink::memory(0),
        memory_limit: (spec.memory_limit_bytes > 0).then_some(spec.memory_limit_bytes),
        cwd: (!spec.working_dir.is_empty()).then(|| spec.working_dir.clone()),
        usage,
        listen_ports: Vec::new(),
        before_guest: None,
        http: None,
    }
}

/// Makes `run` serve the container over HTTP when its component is a wasi:http handler; returns the sender
/// that starts its drain.
fn serve_http(
    engine: &Engine,
    program: &Program,
    spec: &ContainerSpec,
    run: &mut RunSpec,
) -> Option<oneshot::Sender<()>> {
    let Program::Component(component) = program else {
        return None;
    };
    if !engine::detect::exports_http_handler(engine.wasmtime(), component) {
        return None;
    }
    let (drain, drained) = oneshot::channel();
    run.http = Some(engine::http::HttpServing {
        max_concurrency: match spec.http_max_concurrency {
            0 => engine::http::DEFAULT_MAX_CONCURRENCY,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        },
        drain: drained,
    });
    Some(drain)
}

fn state_name(state: i32) -> &'static str {
    match ContainerState::try_from(state) {
        Ok(ContainerState::Created) => "created",
        Ok(ContainerState::Running) => "running",
        Ok(ContainerState::Exited) => "exited",
        Err(_) => "in an unknown state",
    }
}

pub fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}
