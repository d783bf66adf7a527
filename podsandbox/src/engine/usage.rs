//! Resource usage of one container instance, shared between the task that runs it and the stats RPC.
//!
//! CPU is the thread CPU time spent inside the polls of the instance's future: a guest runs only while its
//! future is polled (it yields at every epoch tick), and a poll runs on one worker thread from start to end,
//! so `CLOCK_THREAD_CPUTIME_ID` before and after a poll measures that poll exactly, whichever thread runs it.
//! Time parked in async host calls (a `poll_oneoff` sleep) is not polled and so not counted, like a sleeping
//! process. Memory is the bytes of linear memories and tables the store's limiter has granted.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use nix::time::{ClockId, clock_gettime};

/// Counters of one container; cheap to read at any time from any thread.
#[derive(Debug, Default)]
pub struct Usage {
    cpu_nanos: AtomicU64,
    memory_bytes: AtomicU64,
}

impl Usage {
    pub fn new() -> Arc<Usage> {
        Arc::new(Usage::default())
    }

    /// CPU time the instance has spent running, in nanoseconds.
    pub fn cpu_nanos(&self) -> u64 {
        self.cpu_nanos.load(Ordering::Relaxed)
    }

    /// Bytes of linear memory and tables the instance currently holds.
    pub fn memory_bytes(&self) -> u64 {
        self.memory_bytes.load(Ordering::Relaxed)
    }

    pub(crate) fn add_cpu(&self, nanos: u64) {
        self.cpu_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub(crate) fn set_memory(&self, bytes: u64) {
        self.memory_bytes.store(bytes, Ordering::Relaxed);
    }

    /// Replaces one store's `old` share of the memory count with `new` (several stores counting together).
    pub(crate) fn change_memory(&self, old: u64, new: u64) {
        if new >= old {
            self.memory_bytes.fetch_add(new - old, Ordering::Relaxed);
        } else {
            // Never below zero: a `set_memory(0)` at the end of the run may have come first.
            let _ = self
                .memory_bytes
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |m| {
                    Some(m.saturating_sub(old - new))
                });
        }
    }
}

/// A future that adds the thread CPU time of each of its polls to a [`Usage`].
pub struct CpuTimed<F> {
    // Boxed so the adapter is `Unpin` without unsafe pin projection; one allocation per container run.
    inner: Pin<Box<F>>,
    usage: Arc<Usage>,
}

impl<F: Future> CpuTimed<F> {
    pub fn new(inner: F, usage: Arc<Usage>) -> CpuTimed<F> {
        CpuTimed {
            inner: Box::pin(inner),
            usage,
        }
    }
}

impl<F: Future> Future for CpuTimed<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let before = thread_cpu_nanos();
        let poll = self.inner.as_mut().poll(cx);
        if let (Some(before), Some(after)) = (before, thread_cpu_nanos()) {
            self.usage.add_cpu(after.saturating_sub(before));
        }
        poll
    }
}

/// The calling thread's CPU time; `None` only if the clock is unavailable, in which case the poll goes
/// uncounted rather than failing the container.
fn thread_cpu_nanos() -> Option<u64> {
    let ts = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).ok()?;
    let secs = u64::try_from(ts.tv_sec()).ok()?;
    let nanos = u64::try_from(ts.tv_nsec()).ok()?;
    Some(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Spins for `spin` on each poll, `polls` times, then completes.
    struct Busy {
        polls: u32,
        spin: Duration,
    }

    impl Future for Busy {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            let start = Instant::now();
            let mut x = 0u64;
            while start.elapsed() < self.spin {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            if self.polls == 0 {
                return Poll::Ready(());
            }
            self.polls -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn busy_future_accumulates_cpu() {
        let usage = Usage::new();
        let busy = Busy {
            polls: 4,
            spin: Duration::from_millis(10),
        };
        tokio::spawn(CpuTimed::new(busy, Arc::clone(&usage)))
            .await
            .unwrap();
        // Five polls of 10 ms of spinning each; allow for coarse clocks and preemption.
        assert!(usage.cpu_nanos() >= 25_000_000, "{}", usage.cpu_nanos());
    }

    #[tokio::test]
    async fn sleeping_future_accumulates_almost_nothing() {
        let usage = Usage::new();
        CpuTimed::new(
            tokio::time::sleep(Duration::from_millis(200)),
            Arc::clone(&usage),
        )
        .await;
        assert!(usage.cpu_nanos() < 20_000_000, "{}", usage.cpu_nanos());
    }
}
