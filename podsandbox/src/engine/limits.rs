//! Per-instance resource limits: a container's memory limit, enforced inside wasmtime.
//!
//! The limit counts all linear memories of a store together (a component has several), like a cgroup counts a
//! process's whole heap. Exceeding it is treated as the OOM killer would: the growing instruction traps, the
//! limiter records the attempt, and the run ends as `OOMKilled` with exit code 137 — instead of `memory.grow`
//! returning -1, which most guests turn into an opaque abort far from the cause.

use std::sync::Arc;

use wasmtime::ResourceLimiter;

use super::usage::Usage;

/// Elements allowed in one table. A table element costs a pointer of host memory; compilers emit tables of
/// at most a few thousand functions, so a million (8 MiB) leaves room while bounding a hostile guest.
pub const MAX_TABLE_ELEMENTS: usize = 1 << 20;
/// Instances per store: a component instantiates a few dozen core instances at most.
const MAX_INSTANCES: usize = 1_000;
/// Tables per store.
const MAX_TABLES: usize = 1_000;
/// Linear memories per store; each reserves (not commits) several GiB of address space.
const MAX_MEMORIES: usize = 100;
/// Host bytes per table element, for the working set: wasmtime stores each element as one pointer.
const TABLE_ELEMENT_BYTES: u64 = std::mem::size_of::<usize>() as u64;

impl Drop for MemoryLimiter {
    fn drop(&mut self) {
        // The store and its memories go with the limiter: a shared usage gives back this store's share.
        if let Some(published) = self.shared {
            self.usage.change_memory(published, 0);
        }
    }
}

/// A memory request the limit refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exceeded {
    /// The limit, in bytes.
    pub limit: u64,
    /// The total the store would have reached, in bytes.
    pub requested: u64,
}

/// The error a refused growth traps with; the run maps it to `OOMKilled` through [`MemoryLimiter::exceeded`].
#[derive(Debug, thiserror::Error)]
#[error("memory limit of {limit} bytes exceeded (requested {requested} bytes)")]
pub struct MemoryLimitExceeded {
    pub limit: u64,
    pub requested: u64,
}

/// The [`ResourceLimiter`] of one container's store.
#[derive(Debug)]
pub struct MemoryLimiter {
    limit: Option<u64>,
    /// Bytes of linear memory currently granted across the store.
    used: u64,
    /// The size change granted by the last `memory_growing`, undone if that growth then fails.
    last_grant: u64,
    exceeded: Option<Exceeded>,
    /// Bytes of table elements currently granted across the store.
    table_bytes: u64,
    /// The size change granted by the last `table_growing`, undone if that growth then fails.
    last_table_grant: u64,
    /// Where the current total (memories + tables) is published for the stats RPC.
    usage: Arc<Usage>,
    /// `Some(last published total)` when several stores count into one `usage` (a wasi:http handler's
    /// instances, one per request): changes are added to it, and the store's share is taken back when the
    /// limiter (that is, the store) is dropped. `None`: the store's total is the usage.
    shared: Option<u64>,
}

impl MemoryLimiter {
    /// A limiter allowing `limit` bytes of linear memory in total; `None` for no limit.
    pub fn new(limit: Option<u64>, usage: Arc<Usage>) -> MemoryLimiter {
        MemoryLimiter {
            limit,
            used: 0,
            last_grant: 0,
            exceeded: None,
            table_bytes: 0,
            last_table_grant: 0,
            usage,
            shared: None,
        }
    }

    /// A limiter of one of several stores counting into the same `usage` (each store limited to `limit`).
    pub fn sharing(limit: Option<u64>, usage: Arc<Usage>) -> MemoryLimiter {
        let mut limiter = MemoryLimiter::new(limit, usage);
        limiter.shared = Some(0);
        limiter
    }

    fn publish(&mut self) {
        let total = self.used.saturating_add(self.table_bytes);
        match &mut self.shared {
            None => self.usage.set_memory(total),
            Some(published) => {
                self.usage.change_memory(*published, total);
                *published = total;
            }
        }
    }

    /// The first request the limit refused, if any.
    pub fn exceeded(&self) -> Option<Exceeded> {
        self.exceeded
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let grow = to_u64(desired).saturating_sub(to_u64(current));
        let requested = self.used.saturating_add(grow);
        if let Some(limit) = self.limit
            && requested > limit
        {
            let exceeded = Exceeded { limit, requested };
            self.exceeded.get_or_insert(exceeded);
            return Err(MemoryLimitExceeded { limit, requested }.into());
        }
        self.used = requested;
        self.last_grant = grow;
        self.publish();
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        // Growth is synchronous within a store, so the growth that failed is the one just granted (e.g. it went
        // past the memory's own maximum). The guest sees -1 as the spec requires.
        self.used = self.used.saturating_sub(self.last_grant);
        self.last_grant = 0;
        self.publish();
        Ok(())
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // A refused table growth is spec behaviour (`table.grow` returns -1), not an OOM kill.
        if desired > MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        let grow = to_u64(desired)
            .saturating_sub(to_u64(current))
            .saturating_mul(TABLE_ELEMENT_BYTES);
        self.table_bytes = self.table_bytes.saturating_add(grow);
        self.last_table_grant = grow;
        self.publish();
        Ok(true)
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        // As for memories: the failed growth is the one just granted.
        self.table_bytes = self.table_bytes.saturating_sub(self.last_table_grant);
        self.last_table_grant = 0;
        self.publish();
        Ok(())
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const PAGE: usize = 64 * 1024;

    #[test]
    fn counts_all_memories_together() {
        let mut l = MemoryLimiter::new(Some(3 * PAGE as u64), Usage::new());
        assert!(l.memory_growing(0, 2 * PAGE, None).unwrap());
        assert!(l.memory_growing(0, PAGE, None).unwrap());
        assert_eq!(l.usage.memory_bytes(), 3 * PAGE as u64);
        let err = l.memory_growing(PAGE, 2 * PAGE, None).unwrap_err();
        assert!(err.to_string().contains("memory limit of 196608 bytes"));
        assert_eq!(
            l.exceeded(),
            Some(Exceeded {
                limit: 3 * PAGE as u64,
                requested: 4 * PAGE as u64
            })
        );
    }

    #[test]
    fn failed_growth_is_given_back() {
        let mut l = MemoryLimiter::new(Some(2 * PAGE as u64), Usage::new());
        assert!(l.memory_growing(0, 2 * PAGE, None).unwrap());
        l.memory_grow_failed(wasmtime::format_err!("past maximum"))
            .unwrap();
        assert!(l.memory_growing(0, 2 * PAGE, None).unwrap());
        assert_eq!(l.exceeded(), None);
    }

    #[test]
    fn sharing_stores_add_up_and_give_back_their_share() {
        let usage = Usage::new();
        let mut a = MemoryLimiter::sharing(Some(2 * PAGE as u64), Arc::clone(&usage));
        let mut b = MemoryLimiter::sharing(Some(2 * PAGE as u64), Arc::clone(&usage));
        assert!(a.memory_growing(0, 2 * PAGE, None).unwrap());
        assert!(b.memory_growing(0, PAGE, None).unwrap());
        assert_eq!(usage.memory_bytes(), 3 * PAGE as u64);
        // Each store has the limit to itself.
        assert!(b.memory_growing(PAGE, 3 * PAGE, None).is_err());
        drop(a);
        assert_eq!(usage.memory_bytes(), PAGE as u64);
        drop(b);
        assert_eq!(usage.memory_bytes(), 0);
    }

    #[test]
    fn tables_are_bounded_without_killing() {
        let usage = Usage::new();
        let mut l = MemoryLimiter::new(None, Arc::clone(&usage));
        assert!(l.table_growing(0, 10, None).unwrap());
        assert_eq!(usage.memory_bytes(), 10 * TABLE_ELEMENT_BYTES);
        assert!(!l.table_growing(0, MAX_TABLE_ELEMENTS + 1, None).unwrap());
    }
}
