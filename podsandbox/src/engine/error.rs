//! [`EngineError`]: failures to build the engine or to load a program.
//!
//! Failures while a program runs are not errors of the engine: they end as an
//! [`ExitStatus`](super::ExitStatus), like a process exit.

use std::io;
use std::path::PathBuf;

/// A wasmtime error, boxed so it can sit in a `#[source]` chain (wasmtime's own error type does not implement
/// `std::error::Error`).
pub type WasmtimeError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Converts a wasmtime error for a `source` field, keeping its cause chain.
pub(crate) fn boxed(error: wasmtime::Error) -> WasmtimeError {
    error.into_boxed_dyn_error()
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("building the wasmtime engine")]
    BuildEngine {
        #[source]
        source: WasmtimeError,
    },

    #[error("adding the WASI {abi} imports to the linker")]
    LinkWasi {
        abi: &'static str,
        #[source]
        source: WasmtimeError,
    },

    #[error("moving a wasi:http handler's compiled code into the pooling engine")]
    AdoptHandler {
        #[source]
        source: WasmtimeError,
    },

    #[error(
        "preparing the wasi:http handler (its imports must be in the wasi:http/proxy world and \
         wasi:cli, filesystem or sockets of WASI 0.2)"
    )]
    LinkHandler {
        #[source]
        source: WasmtimeError,
    },

    #[error("starting the epoch ticker thread")]
    StartTicker {
        #[source]
        source: io::Error,
    },

    #[error("reading program {}", path.display())]
    ReadProgram {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{} is not WebAssembly: it is {found}", path.display())]
    NotWasm { path: PathBuf, found: String },

    #[error(
        "{} is WebAssembly of an unsupported version or layer (header bytes {version}); \
         expected a core module (01 00 00 00) or a component (0d 00 01 00)",
        path.display()
    )]
    UnsupportedWasm { path: PathBuf, version: String },

    #[error("compiling core module {}", path.display())]
    CompileModule {
        path: PathBuf,
        #[source]
        source: WasmtimeError,
    },

    #[error("compiling component {}", path.display())]
    CompileComponent {
        path: PathBuf,
        #[source]
        source: WasmtimeError,
    },

    #[error("precompiling Wasm")]
    Precompile {
        #[source]
        source: WasmtimeError,
    },

    #[error("refusing precompiled artifact {}: {reason}", path.display())]
    UntrustedArtifact { path: PathBuf, reason: String },

    #[error("loading precompiled artifact {}", path.display())]
    LoadArtifact {
        path: PathBuf,
        #[source]
        source: WasmtimeError,
    },
}
