//! The fixtures behave as documented when run by wasmtime directly (p1 for modules, p2 for the
//! component), independent of wasm-cri.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use conformance::fixtures::{fixture_path, fixtures_dir};
use wasmtime::{
    Config, Engine, Linker, Module, Store, StoreLimits, StoreLimitsBuilder, Trap, UpdateDeadline,
};
use wasmtime_wasi::p1::{self, WasiP1Ctx};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{
    FsPerms, I32Exit, ResourceTable, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView,
};

struct Run {
    /// `None` when the guest returned normally, else the exit code, or `Err` with the trap.
    exit: Result<Option<i32>, Trap>,
    stdout: String,
    stderr: String,
}

struct P1 {
    wasi: WasiP1Ctx,
    limits: StoreLimits,
}

/// A guest that should finish but is still running after this long fails with `Trap::Interrupt`
/// instead of hanging the test binary.
const WATCHDOG: Duration = Duration::from_secs(120);

/// One engine and one compiled module per fixture for the whole test process (compiling with a debug
/// build of cranelift is the slow part). A ticker bumps the epoch every 10 ms; each store decides in
/// its own deadline callback whether its time is up, so tests running in parallel do not interrupt
/// each other.
struct Runner {
    engine: Engine,
    modules: Mutex<HashMap<String, Module>>,
}

fn runner() -> &'static Runner {
    static RUNNER: OnceLock<Runner> = OnceLock::new();
    RUNNER.get_or_init(|| {
        let mut config = Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config).unwrap();
        let ticker = engine.clone();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(10));
                ticker.increment_epoch();
            }
        });
        Runner {
            engine,
            modules: Mutex::new(HashMap::new()),
        }
    })
}

fn module(name: &str) -> Module {
    let runner = runner();
    let mut modules = runner.modules.lock().unwrap();
    if let Some(m) = modules.get(name) {
        return m.clone();
    }
    let m = Module::from_file(&runner.engine, fixture_path(fixtures_dir().unwrap(), name)).unwrap();
    modules.insert(name.to_string(), m.clone());
    m
}

/// Interrupts the store's guest once `after` has passed.
fn set_deadline<T: 'static>(store: &mut Store<T>, after: Duration) {
    let deadline = Instant::now() + after;
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        Ok(if Instant::now() >= deadline {
            UpdateDeadline::Interrupt
        } else {
            UpdateDeadline::Continue(1)
        })
    });
}

/// Runs a p1 fixture; with `interrupt_after` a guest still running by then traps with `Interrupt`.
fn run_p1(
    name: &str,
    args: &[&str],
    configure: impl FnOnce(&mut WasiCtxBuilder),
    memory_limit: Option<usize>,
    interrupt_after: Option<Duration>,
) -> Run {
    let engine = &runner().engine;
    let module = module(name);
    let mut linker: Linker<P1> = Linker::new(engine);
    p1::add_to_linker_sync(&mut linker, |s: &mut P1| &mut s.wasi).unwrap();
    let stdout = MemoryOutputPipe::new(1 << 20);
    let stderr = MemoryOutputPipe::new(1 << 20);
    let mut builder = WasiCtxBuilder::new();
    let mut argv = vec![name];
    argv.extend_from_slice(args);
    builder
        .args(&argv)
        .stdout(stdout.clone())
        .stderr(stderr.clone());
    configure(&mut builder);
    let limits = match memory_limit {
        Some(bytes) => StoreLimitsBuilder::new().memory_size(bytes).build(),
        None => StoreLimits::default(),
    };
    let mut store = Store::new(
        engine,
        P1 {
            wasi: builder.build_p1(),
            limits,
        },
    );
    store.limiter(|s| &mut s.limits);
    set_deadline(&mut store, interrupt_after.unwrap_or(WATCHDOG));
    let instance = linker.instantiate(&mut store, &module).unwrap();
    let start = instance
        .get_typed_func::<(), ()>(&mut store, "_start")
        .unwrap();
    let exit = match start.call(&mut store, ()) {
        Ok(()) => Ok(None),
        Err(e) => match e.downcast_ref::<I32Exit>() {
            Some(I32Exit(code)) => Ok(Some(*code)),
            None => Err(*e
                .downcast_ref::<Trap>()
                .unwrap_or_else(|| panic!("{name}: not a trap: {e:?}"))),
        },
    };
    drop(store);
    Run {
        exit,
        stdout: String::from_utf8_lossy(&stdout.contents()).into_owned(),
        stderr: String::from_utf8_lossy(&stderr.contents()).into_owned(),
    }
}

fn plain(_: &mut WasiCtxBuilder) {}

#[test]
fn hello_prints_and_exits_zero() {
    let run = run_p1("hello", &[], plain, None, None);
    assert!(matches!(run.exit, Ok(None | Some(0))), "{:?}", run.exit);
    assert_eq!(run.stdout, "hello from wasm\n");
}

#[test]
fn exitcode_exits_with_its_argument() {
    let run = run_p1("exitcode", &[], plain, None, None);
    assert_eq!(run.exit, Ok(Some(3)));
    assert_eq!(run.stderr, "exitcode: exiting with 3\n");
    let run = run_p1("exitcode", &["42"], plain, None, None);
    assert_eq!(run.exit, Ok(Some(42)));
}

#[test]
fn trap_traps_with_unreachable() {
    let run = run_p1("trap", &[], plain, None, None);
    assert_eq!(run.exit, Err(Trap::UnreachableCodeReached));
    assert_eq!(run.stdout, "about to trap\n");
}

#[test]
fn loop_and_sleeper_run_until_interrupted() {
    let run = run_p1("loop", &[], plain, None, Some(Duration::from_millis(300)));
    assert_eq!(run.exit, Err(Trap::Interrupt));
    let run = run_p1(
        "sleeper",
        &[],
        plain,
        None,
        Some(Duration::from_millis(300)),
    );
    assert_eq!(run.exit, Err(Trap::Interrupt));
    assert_eq!(run.stdout, "sleeper: started\n");
}

#[test]
fn memhog_aborts_at_the_memory_limit() {
    let run = run_p1("memhog", &[], plain, Some(8 << 20), None);
    assert_eq!(run.exit, Err(Trap::UnreachableCodeReached));
    assert!(
        run.stdout.contains("memhog: allocated 1 MiB\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.starts_with("memhog: malloc failed after "),
        "{}",
        run.stderr
    );
    let run = run_p1(
        "memhog",
        &["2"],
        plain,
        Some(8 << 20),
        Some(Duration::from_millis(300)),
    );
    assert_eq!(run.exit, Err(Trap::Interrupt));
    assert!(
        run.stdout
            .ends_with("memhog: allocated 2 MiB\nmemhog: holding 2 MiB\n"),
        "{}",
        run.stdout
    );
}

#[test]
fn probe_reports_args_env_dirs_hostname_and_cwd() {
    let rw = tempfile::tempdir().unwrap();
    std::fs::write(rw.path().join("b"), "").unwrap();
    std::fs::write(rw.path().join("a"), "").unwrap();
    let ro = tempfile::tempdir().unwrap();
    let etc = tempfile::tempdir().unwrap();
    std::fs::write(etc.path().join("hostname"), "podhost\n").unwrap();
    let preopen = |b: &mut WasiCtxBuilder, host: &Path, guest: &str, write: bool| {
        let perms = if write {
            FsPerms::ReadWrite
        } else {
            FsPerms::ReadOnly
        };
        b.preopened_dir(host, guest, perms).unwrap();
    };
    let run = run_p1(
        "probe",
        &["/data", "/ro"],
        |b| {
            b.env("GREETING", "hi");
            preopen(b, rw.path(), "/data", true);
            preopen(b, ro.path(), "/ro", false);
            preopen(b, etc.path(), "/etc", false);
        },
        None,
        None,
    );
    assert_eq!(run.exit, Ok(None), "{}", run.stdout);
    let lines: Vec<&str> = run.stdout.lines().collect();
    for want in [
        "arg[0]=probe",
        "arg[1]=/data",
        "env:GREETING=hi",
        "ls /data: a b",
        "write /data: ok",
        "ls /ro:",
        "hostname: podhost",
        "cwd: /",
        "probe: done",
    ] {
        assert!(
            lines.contains(&want),
            "missing {want:?} in:\n{}",
            run.stdout
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("write /ro: ") && *l != "write /ro: ok"),
        "{}",
        run.stdout
    );
    assert_eq!(
        std::fs::read_to_string(rw.path().join("wcri-probe")).unwrap(),
        "written by probe\n"
    );
}

#[test]
fn probe_reads_probe_dirs_from_env() {
    let run = run_p1(
        "probe",
        &["first", "/abs"],
        |b| {
            b.env("PROBE_DIRS", "/nope:/also-nope");
        },
        None,
        None,
    );
    assert_eq!(run.exit, Ok(None));
    assert!(!run.stdout.contains("ls first"), "{}", run.stdout);
    assert!(run.stdout.contains("arg[1]=first\n"), "{}", run.stdout);
    assert!(run.stdout.contains("ls /abs: "), "{}", run.stdout);
    assert!(run.stdout.contains("ls /nope: "), "{}", run.stdout);
    assert!(run.stdout.contains("ls /also-nope: "), "{}", run.stdout);
    assert!(run.stdout.contains("hostname: "), "{}", run.stdout);
}

struct P2 {
    ctx: WasiCtx,
    table: ResourceTable,
}

impl WasiView for P2 {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

#[test]
fn hello_component_runs_as_a_p2_command() {
    let engine = &runner().engine;
    let component = wasmtime::component::Component::from_file(
        engine,
        fixture_path(fixtures_dir().unwrap(), "hello-component"),
    )
    .unwrap();
    let mut linker = wasmtime::component::Linker::<P2>::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
    let stdout = MemoryOutputPipe::new(1 << 20);
    let ctx = WasiCtxBuilder::new()
        .args(&["hello"])
        .stdout(stdout.clone())
        .build();
    let mut store = Store::new(
        engine,
        P2 {
            ctx,
            table: ResourceTable::new(),
        },
    );
    set_deadline(&mut store, WATCHDOG);
    let command =
        wasmtime_wasi::p2::bindings::sync::Command::instantiate(&mut store, &component, &linker)
            .unwrap();
    let result = command.wasi_cli_run().call_run(&mut store).unwrap();
    assert_eq!(result, Ok(()));
    drop(store);
    assert_eq!(
        String::from_utf8_lossy(&stdout.contents()),
        "hello from wasm\n"
    );
}
