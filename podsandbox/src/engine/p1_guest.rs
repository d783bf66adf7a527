//! What the p1 import shadows (`p1_rofs`, `p1_sockets`) share: the import module's name and the way a host
//! function reaches the guest's memory and the store state together, as wiggle's own linker entries do.

use wasmtime::{Caller, Extern};
use wiggle::GuestMemory;

use super::wasi::ModuleState;

/// The WASI preview 1 import module.
pub const MODULE: &str = "wasi_snapshot_preview1";

/// The guest's memory (its `memory` export, looked up by the caller) and the store state.
pub fn guest_memory<'a>(
    export: &'a Option<Extern>,
    caller: &'a mut Caller<'_, ModuleState>,
) -> wasmtime::Result<(GuestMemory<'a>, &'a mut ModuleState)> {
    match export {
        Some(Extern::Memory(m)) => {
            let (memory, state) = m.data_and_store_mut(caller);
            Ok((GuestMemory::Unshared(memory), state))
        }
        Some(Extern::SharedMemory(m)) => Ok((GuestMemory::Shared(m.data()), caller.data_mut())),
        _ => Err(wasmtime::Error::msg("missing required memory export")),
    }
}
