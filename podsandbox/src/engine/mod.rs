//! The pod's wasmtime engine: the one configuration, loading programs, and running them as containers.
//!
//! - [`config`]: the single place the wasmtime `Config` is built, and the epoch ticker thread.
//! - [`detect`]: core module vs component vs "not Wasm", from the file's bytes.
//! - [`run`](mod@run): one container run, raced against a stop; [`status`]: how it ended.
//! - [`limits`]: the per-store memory limiter; [`wasi`]: the WASI context built from a [`RunSpec`].
//! - [`p1_rofs`]: preview 1 path calls that report the kernel's read-only refusals as `rofs`, not `io`, using
//!   [`read_only_fs`] to ask the kernel.
//! - [`p1_sockets`]: pre-opened TCP listeners and accepted connections for preview 1 guests (`LISTEN_FDS`).
//! - [`http`]: serving a `wasi:http/incoming-handler` component over HTTP/1.1 and HTTP/2, an instance per request.
//! - [`precompiled`]: compiling into the image store's precompile cache and loading from it (with
//!   `artifact_trust`, which decides which artifacts may be mapped as code).
//! - [`usage`]: per-container CPU time and memory counters, read by the stats RPC.
//! - [`stdin`]: a guest stdin fed by the host (exec).
//! - [`error`]: the [`EngineError`] type.

pub mod config;
pub mod detect;
pub mod error;
pub mod http;
pub mod limits;
pub mod p1_guest;
pub mod p1_rofs;
pub mod p1_sockets;
pub mod precompiled;
pub mod read_only_fs;
pub mod run;
pub mod status;
pub mod stdin;
pub mod usage;
pub mod wasi;

mod artifact_trust;

use std::path::Path;
use std::sync::Arc;

use wasmtime::Module;
use wasmtime::component::Component;

pub use error::EngineError;
pub use run::{BeforeGuest, BeforeGuestError, Preopen, RunSpec, run};
pub use status::{ExitReason, ExitStatus};
pub use stdin::GuestStdin;
pub use usage::Usage;

use config::EpochTicker;
use detect::Detected;
use error::boxed;
use wasi::{ComponentState, ModuleState};

/// A wasmtime engine with wasm-cri's configuration, the WASI linkers, and the epoch ticker. Clones share all of
/// it; the ticker thread ends when the last clone is dropped.
#[derive(Clone)]
pub struct Engine {
    inner: wasmtime::Engine,
    linkers: Arc<Linkers>,
    _ticker: Arc<EpochTicker>,
}

/// The WASI imports, linked once per engine rather than once per container.
pub(crate) struct Linkers {
    pub(crate) module: wasmtime::Linker<ModuleState>,
    pub(crate) component: wasmtime::component::Linker<ComponentState>,
}

/// A compiled program, ready to instantiate any number of times.
#[derive(Clone)]
pub enum Program {
    Module(Module),
    Component(Component),
}

impl Engine {
    /// Builds the engine and starts its epoch ticker thread.
    ///
    /// This starts a thread: in the pod process, call it only after joining the pod's namespaces (`setns`
    /// affects only the calling thread, and threads started earlier stay outside).
    pub fn new() -> Result<Engine, EngineError> {
        let inner = wasmtime::Engine::new(&config::build_config())
            .map_err(|e| EngineError::BuildEngine { source: boxed(e) })?;

        let mut module = wasmtime::Linker::new(&inner);
        wasmtime_wasi::p1::add_to_linker_async(&mut module, |s: &mut ModuleState| &mut s.wasi)
            .map_err(|e| EngineError::LinkWasi {
                abi: "preview1",
                source: boxed(e),
            })?;
        // wasmtime-wasi's proc_exit refuses codes from 126 up (reserved for the host in WASI's view), but a shell's
        // 126/127 are real exit codes that the kubelet and probes read; pass every code through, keeping the low
        // byte as Linux does.
        module.allow_shadowing(true);
        module
            .func_wrap(
                "wasi_snapshot_preview1",
                "proc_exit",
                |code: i32| -> wasmtime::Result<()> {
                    Err(wasmtime_wasi::I32Exit(code & 0xff).into())
                },
            )
            .map_err(|e| EngineError::LinkWasi {
                abi: "preview1",
                source: boxed(e),
            })?;
        module.allow_shadowing(false);
        p1_rofs::add_to_linker(&mut module).map_err(|e| EngineError::LinkWasi {
            abi: "preview1",
            source: boxed(e),
        })?;
        p1_sockets::add_to_linker(&mut module).map_err(|e| EngineError::LinkWasi {
            abi: "preview1",
            source: boxed(e),
        })?;
        let mut component = wasmtime::component::Linker::new(&inner);
        wasmtime_wasi::p2::add_to_linker_async(&mut component).map_err(|e| {
            EngineError::LinkWasi {
                abi: "preview2",
                source: boxed(e),
            }
        })?;

        let ticker = EpochTicker::start(inner.clone())
            .map_err(|source| EngineError::StartTicker { source })?;
        Ok(Engine {
            inner,
            linkers: Arc::new(Linkers { module, component }),
            _ticker: Arc::new(ticker),
        })
    }

    /// The underlying wasmtime engine (e.g. for the precompile cache's compatibility hash).
    pub fn wasmtime(&self) -> &wasmtime::Engine {
        &self.inner
    }

    pub(crate) fn linkers(&self) -> &Linkers {
        &self.linkers
    }

    /// Reads and compiles the program at `path`, telling a core module from a component by its bytes. CPU-heavy:
    /// call it from a blocking context (e.g. `spawn_blocking`).
    pub fn load(&self, path: &Path) -> Result<Program, EngineError> {
        let bytes = std::fs::read(path).map_err(|source| EngineError::ReadProgram {
            path: path.to_path_buf(),
            source,
        })?;
        self.compile(path, &bytes)
    }

    /// Compiles `bytes`; `path` only names the program in errors.
    pub fn compile(&self, path: &Path, bytes: &[u8]) -> Result<Program, EngineError> {
        match detect::detect(bytes) {
            Detected::Module => Module::from_binary(&self.inner, bytes)
                .map(Program::Module)
                .map_err(|e| EngineError::CompileModule {
                    path: path.to_path_buf(),
                    source: boxed(e),
                }),
            Detected::Component => Component::from_binary(&self.inner, bytes)
                .map(Program::Component)
                .map_err(|e| EngineError::CompileComponent {
                    path: path.to_path_buf(),
                    source: boxed(e),
                }),
            Detected::UnsupportedWasm(version) => Err(EngineError::UnsupportedWasm {
                path: path.to_path_buf(),
                version,
            }),
            Detected::NotWasm(found) => Err(EngineError::NotWasm {
                path: path.to_path_buf(),
                found,
            }),
        }
    }
}

#[cfg(test)]
mod test_mounts;
#[cfg(test)]
mod tests;
