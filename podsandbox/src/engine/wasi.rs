//! Mapping a container's [`RunSpec`] onto a WASI context, and the store state of each program kind.
//!
//! The guest inherits nothing from the pod process: argv, environment, stdio and directories all come from the
//! spec. Clocks and randomness are the host's (wasmtime-wasi defaults). Components get `wasi:sockets` with
//! every address of the pod's network namespace (see [`builder`]); core modules get pre-opened listeners
//! (`p1_sockets`).

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::limits::MemoryLimiter;
use super::p1_rofs::PreopenHosts;
use super::p1_sockets::{ListenError, Listeners, SocketTable};
use super::run::RunSpec;

/// Store state of a core module run through WASI preview 1.
pub struct ModuleState {
    pub wasi: WasiP1Ctx,
    pub limiter: MemoryLimiter,
    /// The host directory behind each pre-open, for telling `EROFS` from `EIO` (see `p1_rofs`).
    pub preopen_hosts: PreopenHosts,
    /// The guest's socket fds: its pre-opened listeners and the connections accepted from them.
    pub sockets: SocketTable,
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

/// Why a store's state could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Preopen(#[from] PreopenError),
    #[error(transparent)]
    Listen(#[from] ListenError),
}

/// Builds the WASI context builder for `spec` (shared by both program kinds). `listen_env` (the `LISTEN_*`
/// variables of pre-opened sockets) replaces any variables of those names the image or CRI config set.
pub fn builder(
    spec: &RunSpec,
    listen_env: &[(String, String)],
) -> Result<WasiCtxBuilder, PreopenError> {
    let mut b = WasiCtxBuilder::new();
    // Each instance runs on a thread of its own (`pod::instance`) that holds the container's identity: file
    // accesses run right there instead of on a shared blocking pool, so the kernel checks them against that
    // identity (and skip a thread hop).
    b.allow_blocking_current_thread(true);
    b.args(&spec.args)
        .envs(&guest_env(&spec.env, listen_env))
        .stdout(spec.stdout.clone())
        .stderr(spec.stderr.clone())
        // wasi:sockets policy (components; preview 1 has no socket creation): the network namespace is the
        // boundary, as for a Linux container. The pod process lives in the pod's own namespace, so a guest
        // may bind, listen, connect and send to any address and port there; a hostNetwork pod is the node's
        // namespace by the user's choice, and its guests get what a Linux container in such a pod gets.
        .inherit_network()
        .allow_tcp(true)
        .allow_udp(true)
        // Resolved by the pod process's resolver (getaddrinfo: its /etc/hosts and /etc/resolv.conf, which are
        // the pod's: `pod::resolver`).
        .allow_ip_name_lookup(true);
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

/// The environment the guest sees: the spec's, with `listen_env` in place of any variables of those names.
fn guest_env(env: &[(String, String)], listen_env: &[(String, String)]) -> Vec<(String, String)> {
    env.iter()
        .filter(|(k, _)| !listen_env.iter().any(|(name, _)| name == k))
        .chain(listen_env)
        .cloned()
        .collect()
}

/// The state of a core module's store; binds its listen ports (in the pod process's network namespace).
pub fn module_state(spec: &RunSpec) -> Result<ModuleState, StateError> {
    let listeners = Listeners::bind(&spec.listen_ports)?;
    let listen_env = listeners.env();
    let wasi = builder(spec, &listen_env)?.build_p1();
    Ok(ModuleState {
        wasi,
        sockets: listeners.into_table()?,
        limiter: MemoryLimiter::new(spec.memory_limit, Arc::clone(&spec.usage)),
        preopen_hosts: PreopenHosts::new(&spec.preopens),
    })
}

pub fn component_state(spec: &RunSpec) -> Result<ComponentState, PreopenError> {
    Ok(ComponentState {
        ctx: builder(spec, &[])?.build(),
        table: ResourceTable::new(),
        limiter: MemoryLimiter::new(spec.memory_limit, Arc::clone(&spec.usage)),
    })
}
