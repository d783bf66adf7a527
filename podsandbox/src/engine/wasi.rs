//! Mapping a container's [`RunSpec`] onto a WASI context, and the store state of each program kind.
//!
//! The guest inherits nothing from the pod process: argv, environment, stdio and directories all come from the
//! spec. Clocks and randomness are the host's (wasmtime-wasi defaults). Networking is denied until the pod
//! network policy exists: no TCP, no UDP, no name lookup.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::limits::MemoryLimiter;
use super::run::RunSpec;

/// Store state of a core module run through WASI preview 1.
pub struct ModuleState {
    pub wasi: WasiP1Ctx,
    pub limiter: MemoryLimiter,
}

/// Store state of a component run as a WASI preview 2 command.
pub struct ComponentState {
    pub ctx: WasiCtx,
    pub table: ResourceTable,
    pub limiter: MemoryLimiter,
}

impl WasiView for ComponentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

/// A preopen that could not be opened on the host.
#[derive(Debug, thiserror::Error)]
#[error("opening host directory {host} for guest path {guest}")]
pub struct PreopenError {
    pub host: String,
    pub guest: String,
    #[source]
    pub source: super::error::WasmtimeError,
}

/// Builds the WASI context builder for `spec` (shared by both program kinds).
pub fn builder(spec: &RunSpec) -> Result<WasiCtxBuilder, PreopenError> {
    let mut b = WasiCtxBuilder::new();
    b.args(&spec.args)
        .envs(&spec.env)
        .stdout(spec.stdout.clone())
        .stderr(spec.stderr.clone())
        // Network denied by default; the pod's network policy will decide what to open.
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    // Without a stdin the builder's default applies: a closed stream, so a reading guest sees end-of-file.
    if let Some(stdin) = &spec.stdin {
        b.stdin(stdin.clone());
    }
    // WASI p2 hands this to the guest (`wasi:cli/environment.initial-cwd`). Preview 1 has no such notion:
    // wasi-libc starts core modules at "/" whatever is set here.
    if let Some(cwd) = &spec.cwd {
        b.initial_cwd(cwd);
    }
    for p in &spec.preopens {
        let perms = if p.read_only {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        b.preopened_dir(&p.host, &p.guest, perms)
            .map_err(|e| PreopenError {
                host: p.host.display().to_string(),
                guest: p.guest.clone(),
                source: super::error::boxed(e),
            })?;
    }
    Ok(b)
}

pub fn module_state(spec: &RunSpec) -> Result<ModuleState, PreopenError> {
    Ok(ModuleState {
        wasi: builder(spec)?.build_p1(),
        limiter: MemoryLimiter::new(spec.memory_limit, Arc::clone(&spec.usage)),
    })
}

pub fn component_state(spec: &RunSpec) -> Result<ComponentState, PreopenError> {
    Ok(ComponentState {
        ctx: builder(spec)?.build(),
        table: ResourceTable::new(),
        limiter: MemoryLimiter::new(spec.memory_limit, Arc::clone(&spec.usage)),
    })
}
