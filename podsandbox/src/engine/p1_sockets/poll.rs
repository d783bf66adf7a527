//! `poll_oneoff` with socket subscriptions, mixed freely with clocks and wasmtime-wasi's own fds.
//!
//! A call without socket subscriptions goes to wasmtime-wasi unchanged, except one of clocks only (timed here,
//! see 2). Otherwise:
//! 1. sockets that are ready now are reported at once;
//! 2. else we wait for the first of: a socket, the earliest clock (timed here on the tokio timer, because
//!    wasmtime-wasi sleeps the thread for a lone relative clock when blocking the current thread is allowed),
//!    and wasmtime-wasi's `poll_oneoff` run on just the remaining subscriptions (its fds: stdin, files). To
//!    hand it those, they are written over the start of the guest's own subscription array (there is room:
//!    at least one entry was a socket) and the array is restored afterwards; the guest is inside this call
//!    and cannot look. The losers' futures are dropped, which for wasmtime-wasi frees the pollables it made.
//!    Sockets ready by the time another side won are reported too.

use std::future::pending;
use std::time::Duration;

use futures::future::select_all;
use wasmtime_wasi::p1::types::{
    Clockid, Errno, Event, EventFdReadwrite, Eventrwflags, Eventtype, Subclockflags, Subscription,
    SubscriptionClock, SubscriptionFdReadwrite, SubscriptionU,
};
use wasmtime_wasi::p1::wasi_snapshot_preview1::{self as glue, WasiSnapshotPreview1};
use wiggle::{GuestMemory, GuestPtr, GuestType};

use super::code;
use super::socket::{Ready, Want, wait_registered};
use super::table::SocketTable;
use crate::engine::wasi::ModuleState;

/// One subscription on a socket fd.
#[derive(Debug, Clone, Copy)]
struct Ours {
    userdata: u64,
    fd: i32,
    want: Want,
}

/// The guest's subscriptions, split by who answers them.
#[derive(Default)]
struct Plan {
    ours: Vec<Ours>,
    clocks: Vec<(u64, SubscriptionClock)>,
    theirs: Vec<Subscription>,
}

/// The guest's raw arguments.
#[derive(Clone, Copy)]
pub struct Args {
    pub subs: i32,
    pub events: i32,
    pub nsubs: i32,
    pub nevents: i32,
}

pub async fn poll_oneoff(
    state: &mut ModuleState,
    memory: &mut GuestMemory<'_>,
    fuel: usize,
    a: Args,
) -> wasmtime::Result<i32> {
    let Some(plan) = plan(&state.sockets, memory, a) else {
        state.wasi.set_hostcall_fuel(fuel);
        return glue::poll_oneoff(
            &mut state.wasi,
            memory,
            a.subs,
            a.events,
            a.nsubs,
            a.nevents,
        )
        .await;
    };
    let now = ready_now(&state.sockets, &plan.ours);
    if !now.is_empty() {
        return Ok(code(finish(memory, a, 0, &now)));
    }
    let timers = match timers(&mut state.wasi, &plan.clocks) {
        Ok(t) => t,
        Err(e) => return Ok(e as i32),
    };
    // Register every socket before borrowing the table immutably for the waits.
    let mut failed = Vec::new();
    for o in &plan.ours {
        if let Some(Err(e)) = state
            .sockets
            .get_mut(o.fd)
            .map(|s| s.registered().map(drop))
        {
            failed.push(event(o, Err(e)));
        }
    }
    if !failed.is_empty() {
        return Ok(code(finish(memory, a, 0, &failed)));
    }
    if plan.theirs.is_empty() {
        let events = tokio::select! {
            events = wait_ours(&state.sockets, &plan.ours) => events,
            events = wait_clocks(&timers) => events,
        };
        return Ok(code(finish(memory, a, 0, &events)));
    }

    let array = GuestPtr::<[u8]>::new((
        a.subs.cast_unsigned(),
        Subscription::guest_size().saturating_mul(a.nsubs.cast_unsigned()),
    ));
    let Ok(saved) = memory.to_vec(array) else {
        return Ok(Errno::Fault as i32);
    };
    let subs = GuestPtr::<Subscription>::new(a.subs.cast_unsigned());
    for (i, sub) in (0u32..).zip(&plan.theirs) {
        memory.write(subs.add(i)?, sub.clone())?;
    }
    let theirs_count = i32::try_from(plan.theirs.len())?;
    let ModuleState { wasi, sockets, .. } = state;
    wasi.set_hostcall_fuel(fuel);
    let outcome = tokio::select! {
        r = glue::poll_oneoff(wasi, memory, a.subs, a.events, theirs_count, a.nevents) => Won::Theirs(r),
        events = wait_ours(sockets, &plan.ours) => Won::Ours(events),
        events = wait_clocks(&timers) => Won::Ours(events),
    };
    memory.copy_from_slice(&saved, array)?;
    match outcome {
        Won::Ours(events) => Ok(code(finish(memory, a, 0, &events))),
        Won::Theirs(r) => {
            let errno = r?;
            if errno != Errno::Success as i32 {
                return Ok(errno);
            }
            let count = memory.read(GuestPtr::<u32>::new(a.nevents.cast_unsigned()))?;
            let also = ready_now(sockets, &plan.ours);
            Ok(code(finish(memory, a, count, &also)))
        }
    }
}

enum Won {
    Theirs(wasmtime::Result<i32>),
    Ours(Vec<Event>),
}

/// `None` when wasmtime-wasi should handle the call whole: no socket subscription, or unreadable input (it
/// reports that the way it always does).
fn plan(sockets: &SocketTable, memory: &GuestMemory<'_>, a: Args) -> Option<Plan> {
    if a.nsubs <= 0 {
        return None;
    }
    let array = GuestPtr::<[Subscription]>::new((a.subs.cast_unsigned(), a.nsubs.cast_unsigned()));
    let mut plan = Plan::default();
    for sub in array.iter() {
        let sub = memory.read(sub.ok()?).ok()?;
        let (fd, want) = match &sub.u {
            SubscriptionU::FdRead(SubscriptionFdReadwrite { file_descriptor }) => {
                (i32::from(*file_descriptor), Want::Read)
            }
            SubscriptionU::FdWrite(SubscriptionFdReadwrite { file_descriptor }) => {
                (i32::from(*file_descriptor), Want::Write)
            }
            SubscriptionU::Clock(clock) => {
                plan.clocks.push((sub.userdata, clock.clone()));
                continue;
            }
        };
        if sockets.contains(fd) {
            plan.ours.push(Ours {
                userdata: sub.userdata,
                fd,
                want,
            });
        } else {
            plan.theirs.push(sub);
        }
    }
    // Clock-only polls are timed here too: with blocking the current thread allowed, wasmtime-wasi sleeps the
    // thread for a lone relative clock, which a stop could not interrupt.
    let clocks_only = plan.theirs.is_empty() && !plan.clocks.is_empty();
    (!plan.ours.is_empty() || clocks_only).then_some(plan)
}

/// How long from now each clock subscription runs, with the semantics of wasmtime-wasi's `poll_oneoff`
/// (monotonic or realtime, relative or absolute against the guest's own clocks; other clocks are `inval`).
fn timers(
    wasi: &mut wasmtime_wasi::p1::WasiP1Ctx,
    clocks: &[(u64, SubscriptionClock)],
) -> Result<Vec<(u64, Duration)>, Errno> {
    let mut out = Vec::with_capacity(clocks.len());
    for (userdata, c) in clocks {
        if !matches!(c.id, Clockid::Monotonic | Clockid::Realtime) {
            return Err(Errno::Inval);
        }
        let nanos = if c.flags.contains(Subclockflags::SUBSCRIPTION_CLOCK_ABSTIME) {
            // Neither clock read touches guest memory.
            let now = wasi
                .clock_time_get(&mut GuestMemory::Unshared(&mut []), c.id, 1)
                .map_err(|_| Errno::Inval)?;
            c.timeout.saturating_sub(now)
        } else {
            c.timeout
        };
        out.push((*userdata, Duration::from_nanos(nanos)));
    }
    Ok(out)
}

/// Waits for the earliest timer and reports every timer due by then; never ends without timers.
async fn wait_clocks(timers: &[(u64, Duration)]) -> Vec<Event> {
    let Some(first) = timers.iter().map(|(_, d)| *d).min() else {
        return pending().await;
    };
    tokio::time::sleep(first).await;
    timers
        .iter()
        .filter(|(_, d)| *d <= first)
        .map(|(userdata, _)| Event {
            userdata: *userdata,
            error: Errno::Success,
            type_: Eventtype::Clock,
            fd_readwrite: EventFdReadwrite {
                nbytes: 0,
                flags: Eventrwflags::empty(),
            },
        })
        .collect()
}

fn ready_now(sockets: &SocketTable, ours: &[Ours]) -> Vec<Event> {
    ours.iter()
        .filter_map(|o| {
            let ready = sockets
                .get(o.fd)
                .map_or(Err(Errno::Badf), |s| s.ready_now(o.want));
            match ready {
                Ok(None) => None,
                Ok(Some(r)) => Some(event(o, Ok(r))),
                Err(e) => Some(event(o, Err(e))),
            }
        })
        .collect()
}

/// Waits for the first of `ours` to become ready, then reports it and every other one ready by then. Every
/// socket must be registered already.
async fn wait_ours(sockets: &SocketTable, ours: &[Ours]) -> Vec<Event> {
    if ours.is_empty() {
        return pending().await;
    }
    let waits = ours.iter().map(|o| {
        Box::pin(async move {
            match sockets.get(o.fd).and_then(|s| s.registration()) {
                Some(fd) => wait_registered(fd, o.want).await,
                None => Err(Errno::Badf),
            }
        })
    });
    let (first, index, _rest) = select_all(waits).await;
    let mut events = vec![event(&ours[index], first)];
    for (i, o) in ours.iter().enumerate() {
        if i != index {
            events.extend(ready_now(sockets, std::slice::from_ref(o)));
        }
    }
    events
}

fn event(o: &Ours, ready: Result<Ready, Errno>) -> Event {
    let (error, hangup) = match ready {
        Ok(r) => (Errno::Success, r.hangup),
        Err(e) => (e, false),
    };
    Event {
        userdata: o.userdata,
        error,
        type_: match o.want {
            Want::Read => Eventtype::FdRead,
            Want::Write => Eventtype::FdWrite,
        },
        fd_readwrite: EventFdReadwrite {
            // The byte count is not known without another system call; wasi-libc's poll does not use it.
            nbytes: 1,
            flags: if hangup {
                Eventrwflags::FD_READWRITE_HANGUP
            } else {
                Eventrwflags::empty()
            },
        },
    }
}

/// Writes `events` after the `already` events in the guest's output array, and the total count.
fn finish(
    memory: &mut GuestMemory<'_>,
    a: Args,
    already: u32,
    events: &[Event],
) -> Result<(), Errno> {
    let out = GuestPtr::<Event>::new(a.events.cast_unsigned());
    let mut count = already;
    for e in events {
        if count >= a.nsubs.cast_unsigned() {
            break;
        }
        let at = out.add(count).map_err(|_| Errno::Fault)?;
        memory.write(at, e.clone()).map_err(|_| Errno::Fault)?;
        count += 1;
    }
    memory
        .write(GuestPtr::<u32>::new(a.nevents.cast_unsigned()), count)
        .map_err(|_| Errno::Fault)
}
