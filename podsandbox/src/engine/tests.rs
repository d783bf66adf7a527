//! End-to-end tests of the engine: WAT programs run through `run` with real log files.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::pending;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::*;
use crate::logs::format::parse_line;
use crate::logs::{LogFile, LogSink, Stream};

fn compile(engine: &Engine, wat: &str) -> Program {
    let bytes = wat::parse_str(wat).unwrap();
    engine.compile(Path::new("test.wasm"), &bytes).unwrap()
}

/// A spec writing both streams to `<dir>/c.log`, with the given argv.
fn spec(dir: &Path, args: &[&str]) -> (RunSpec, PathBuf) {
    let log_path = dir.join("c.log");
    let log = LogFile::open(&log_path).unwrap();
    let spec = RunSpec {
        args: args.iter().map(|s| s.to_string()).collect(),
        env: Vec::new(),
        preopens: Vec::new(),
        stdin: None,
        stdout: LogSink::new(log.clone(), Stream::Stdout),
        stderr: LogSink::new(log, Stream::Stderr),
        memory_limit: None,
        cwd: None,
        usage: Usage::new(),
        listen_ports: Vec::new(),
        before_guest: None,
        http: None,
    };
    (spec, log_path)
}

/// (stream, tag, content) of every log line, after checking the timestamp shape.
fn log_entries(path: &Path) -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.is_empty() || text.ends_with('\n'));
    text.lines()
        .map(|line| {
            let (ts, stream, tag, content) = parse_line(line).unwrap();
            assert_eq!(ts.len(), 30, "timestamp {ts}");
            assert!(ts.ends_with('Z') && ts.as_bytes()[19] == b'.');
            assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok());
            (stream.to_string(), tag.to_string(), content.to_string())
        })
        .collect()
}

fn entry(stream: &str, tag: &str, content: &str) -> (String, String, String) {
    (stream.to_string(), tag.to_string(), content.to_string())
}

async fn run_to_end(engine: &Engine, program: &Program, spec: RunSpec) -> ExitStatus {
    run(engine, program, spec, pending()).await
}

/// A module writing `data` (a WAT string literal body) to `fd`.
fn write_module(fd: u32, data: &str) -> String {
    format!(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 64) "{data}")
          (func (export "_start")
            (i32.store (i32.const 0) (i32.const 64))
            (i32.store (i32.const 4) (i32.const {len}))
            (drop (call $w (i32.const {fd}) (i32.const 0) (i32.const 1) (i32.const 8)))))"#,
        len = data.replace("\\n", "\n").len(),
    )
}

fn exit_module(code: i32) -> String {
    format!(
        r#"(module
          (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
          (memory (export "memory") 1)
          (func (export "_start") (call $exit (i32.const {code}))))"#
    )
}

#[test]
fn load_rejects_non_wasm_with_a_description() {
    let engine = Engine::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app");
    std::fs::write(&path, b"#!/bin/sh\nexec true\n").unwrap();
    match engine.load(&path) {
        Err(EngineError::NotWasm { found, .. }) => assert_eq!(found, "a shell script (#!/bin/sh)"),
        other => panic!("unexpected {:?}", other.map(|_| ())),
    }
    let missing = engine.load(&dir.path().join("nope")).map(|_| ());
    assert!(matches!(missing, Err(EngineError::ReadProgram { .. })));
}

#[test]
fn load_detects_module_and_component() {
    let engine = Engine::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join("m.wasm");
    std::fs::write(&m, wat::parse_str("(module)").unwrap()).unwrap();
    assert!(matches!(engine.load(&m), Ok(Program::Module(_))));
    let c = dir.path().join("c.wasm");
    std::fs::write(&c, wat::parse_str("(component)").unwrap()).unwrap();
    assert!(matches!(engine.load(&c), Ok(Program::Component(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_writes_one_full_line() {
    let engine = Engine::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (spec, log) = spec(dir.path(), &["hello.wasm"]);
    let status = run_to_end(
        &engine,
        &compile(&engine, &write_module(1, "hello\\n")),
        spec,
    )
    .await;
    assert_eq!(status, ExitStatus::exited(0, ""));
    assert_eq!(status.reason, ExitReason::Completed);
    assert_eq!(log_entries(&log), vec![entry("stdout", "F", "hello")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stderr_and_a_trailing_partial_line() {
    let engine = Engine::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (spec, log) = spec(dir.path(), &["x"]);
    let status = run_to_end(
        &engine,
        &compile(&engine, &write_module(2, "one\\ntwo")),
        spec,
    )
    .await;
    assert_eq!(status.code, 0);
    assert_eq!(
        log_entries(&log),
        vec![entry("stderr", "F", "one"), entry("stderr", "P", "two")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_line_splits_into_partial_then_full() {
    let engine = Engine::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (spec, log) = spec(dir.path(), &["x"]);
    let wat = r#"(module
      (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "_start")
        (memory.fill (i32.const 1024) (i32.const 97) (i32.const 20000))
        (i32.store8 (i32.const 21024) (i32.const 10))
        (i32.store (i32.const 0) (i32.const 1024))
        (i32.store (i32.const 4) (i32.const 20001))
        (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;
    let status = run_to_end(&engine, &compile(&engine, wat), spec).await;
    assert_eq!(status.code, 0);
    let entries = log_entries(&log);
    assert_eq!(entries.len(), 2);
    assert_eq!((&*entries[0].1, entries[0].2.len()), ("P", 16 * 1024));
    assert_eq!(
        (&*entries[1].1, entries[1].2.len()),
        ("F", 20000 - 16 * 1024)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proc_exit_codes() {
    let engine = Engine::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = spec(dir.path(), &["x"]);
    let status = run_to_end(&engine, &compile(&engine, &exit_module(3)), s).await;
    assert_eq!((status.code, status.reason), (3, ExitReason::Error));
    let (s, _) = spec(dir.path(), &["x"]);
    let status = run_to_end(&engine, &compile(&engine, &exit_module(0)), s).await;
    assert_eq!((status.code, status.reason), (0, ExitReason::Completed));
    // A shell's 126/127 are real exit codes; beyond 255 only the low byte survives, as on Linux.
    for (code, seen) in [(127, 127), (255, 255), (300, 44)] {
        let (s, _) = spec(dir.path(), &["x"]);
        let status = run_to_end(&engine, &compile(&engine, &exit_module(code)), s).await;
        assert_eq!(status.code, seen, "proc_exit({code})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_exits_134_with_the_trap_text() {
    let engine = Engine::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = spec(dir.path(), &["x"]);
    let wat = r#"(module (func $boom unreachable) (func (export "_start") (call $boom)))"#;
    let status = run_to_end(&engine, &compile(&engine, wat), s).await;
    assert_eq!((status.code, status.reason), (134, ExitReason::Error));
    assert!(status.message.contains("unreachable"), "{}", status.message);
    assert!(
        status.message.contains("wasm backtrace: boom <- "),
        "{}",
        status.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_start_and_unknown_import_do_not_start() {
    let engine = Engine::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = spec(dir.path(), &["x"]);
    let status = run_to_end(&engine, &compile(&engine, "(module)"), s).await;
    assert_eq!((status.code, status.reason), (126, ExitReason::Error));
    assert!(status.message.contains("_start"), "{}", status.message);

    let (s, _) = spec(dir.path(), &["x"]);
    let wat = r#"(module (import "env" "nope" (func)) (func (export "_start")))"#;
    let status = run_to_end(&engine, &compile(&engine, wat), s).await;
    assert_eq!(status.code, 126);
    assert!(status.message.contains("env::nope"), "{}", status.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_grow_past_the_limit_is_oom_killed() {
    let engine = Engine::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = spec(dir.path(), &["x"]);
    s.memory_limit = Some(4 * 65536);
    let wat = r#"(module (memory 1)
      (func (export "_start") (drop (memory.grow (i32.const 2))) (drop (memory.grow (i32.const 2)))))"#;
    let status = run_to_end(&engine, &compile(&engine, wat), s).await;
    assert_eq!((status.code, status.reason), (137, ExitReason::OomKilled));
    assert_eq!(
        status.message,
        "memory limit of 262144 bytes exceeded (requested 327680 bytes)"
    );

    // A memory whose initial size is already too large fails at instantiation, also as an OOM kill.
    let (mut s, _) = spec(dir.path(), &["x"]);
    s.memory_limit = Some(65536);
    let status = run_to_end(
        &engine,
        &compile(&engine, "(module (memory 2) (func (export \"_start\")))"),
        s,
    )
    .await;
    assert_eq!((status.code, status.reason), (137, ExitReason::OomKilled));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_interrupts_a_tight_loop() {
    let engine = Engine::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = spec(dir.path(), &["x"]);
    let program = compile(
        &engine,
        r#"(module (func (export "_start") (loop $l (br $l))))"#,
    );
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    // Spawning checks that the run future is Send.
    let task = tokio::spawn({
        let engine = engine.clone();
        async move {
            run(&engine, &program, s, async {
                let _ = rx.await;
            })
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopped_at = Instant::now();
    tx.send(()).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    assert!(
        stopped_at.elapsed() < Duration::from_secs(1),
        "{:?}",
        stopped_at.elapsed()
    );
    assert_eq!(status, ExitStatus::killed());
    assert_eq!(status.code, 137);
    assert_eq!(status.message, "stopped by the runtime");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_interrupts_a_long_sleep() {
    let engine = Engine::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = spec(dir.path(), &["x"]);
    // poll_oneoff with one relative monotonic-clock subscription of one hour.
    let wat = r#"(module
      (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "_start")
        (i64.store (i32.const 0) (i64.const 7))
        (i32.store8 (i32.const 8) (i32.const 0))
        (i32.store (i32.const 16) (i32.const 1))
        (i64.store (i32.const 24) (i64.const 3600000000000))
        (i64.store (i32.const 32) (i64.const 0))
        (i32.store16 (i32.const 40) (i32.const 0))
        (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))))"#;
    let program = compile(&engine, wat);
    let started = Instant::now();
    let status = run(
        &engine,
        &program,
        s,
        tokio::time::sleep(Duration::from_millis(300)),
    )
    .await;
    assert_eq!(status, ExitStatus::killed());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn args_and_env_are_visible() {
    let engine = Engine::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut s, log) = spec(dir.path(), &["app.wasm", "--flag", "value"]);
    s.env = vec![("A".into(), "1".into()), ("B".into(), "two".into())];
    // Exits with argc * 10 + envc, after printing the environment buffer.
    let wat = r#"(module
      (import "wasi_snapshot_preview1" "args_sizes_get" (func $asz (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "environ_sizes_get" (func $esz (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "environ_get" (func $eget (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 1)
      (func (export "_start")
        (drop (call $asz (i32.const 0) (i32.const 4)))
        (drop (call $esz (i32.const 8) (i32.const 12)))
        (drop (call $eget (i32.const 1024) (i32.const 2048)))
        (i32.store (i32.const 16) (i32.const 2048))
        (i32.store (i32.const 20) (i32.load (i32.const 12)))
        (drop (call $w (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))
        (call $exit (i32.add (i32.mul (i32.load (i32.const 0)) (i32.const 10)) (i32.load (i32.const 8))))))"#;
    let status = run_to_end(&engine, &compile(&engine, wat), s).await;
    assert_eq!(status.code, 32);
    assert_eq!(
        log_entries(&log),
        vec![entry("stdout", "P", "A=1\0B=two\0")]
    );
}

/// Tries to create `new.txt` in preopen fd 3 and exits with the errno.
const CREATE_FILE: &str = r#"(module
  (import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "new.txt")
  (func (export "_start")
    (call $exit (call $open (i32.const 3) (i32.const 0) (i32.const 64) (i32.const 7)
      (i32.const 1) (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0) (i32.const 128)))))"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_preopen_refuses_writes() {
    let engine = Engine::new().unwrap();
    let program = compile(&engine, CREATE_FILE);
    let dir = tempfile::tempdir().unwrap();
    for read_only in [true, false] {
        let root = dir.path().join(format!("root-{read_only}"));
        std::fs::create_dir(&root).unwrap();
        let (mut s, _) = spec(dir.path(), &["x"]);
        s.preopens = vec![Preopen {
            host: root.clone(),
            guest: "/".into(),
            read_only,
        }];
        let status = run_to_end(&engine, &program, s).await;
        assert_eq!(
            status.code != 0,
            read_only,
            "read_only={read_only}: {status:?}"
        );
        assert_eq!(root.join("new.txt").exists(), !read_only);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_preopen_directory_does_not_start() {
    let engine = Engine::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = spec(dir.path(), &["x"]);
    s.preopens = vec![Preopen {
        host: dir.path().join("absent"),
        guest: "/".into(),
        read_only: false,
    }];
    let status = run_to_end(&engine, &compile(&engine, &exit_module(0)), s).await;
    assert_eq!(status.code, 126);
    assert!(status.message.contains("absent"), "{}", status.message);
}

/// A component exporting `wasi:cli/run` whose `run` returns `result_discriminant` (0 = ok, 1 = err).
fn run_component(result_discriminant: i32) -> String {
    format!(
        r#"(component
          (core module $m (func (export "run") (result i32) (i32.const {result_discriminant})))
          (core instance $i (instantiate $m))
          (func $run (result (result)) (canon lift (core func $i "run")))
          (instance $cli (export "run" (func $run)))
          (export "wasi:cli/run@0.2.0" (instance $cli)))"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn component_run_result_maps_to_exit_code() {
    let engine = Engine::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = spec(dir.path(), &["x"]);
    let status = run_to_end(&engine, &compile(&engine, &run_component(0)), s).await;
    assert_eq!((status.code, status.reason), (0, ExitReason::Completed));
    let (s, _) = spec(dir.path(), &["x"]);
    let status = run_to_end(&engine, &compile(&engine, &run_component(1)), s).await;
    assert_eq!((status.code, status.reason), (1, ExitReason::Error));

    let (s, _) = spec(dir.path(), &["x"]);
    let status = run_to_end(&engine, &compile(&engine, "(component)"), s).await;
    assert_eq!(status.code, 126);
    assert!(
        status.message.contains("wasi:cli/run"),
        "{}",
        status.message
    );
}

/// A module that makes one preview 1 call against pre-open fd 3 and exits with the errno it got. `call` is the
/// WAT call expression; the strings "file" (at 64), "new" (at 96) and "dir" (at 128) are in memory.
fn errno_module(call: &str) -> String {
    format!(
        r#"(module
          (import "wasi_snapshot_preview1" "path_open"
            (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "path_create_directory"
            (func $path_create_directory (param i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "path_remove_directory"
            (func $path_remove_directory (param i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "path_unlink_file"
            (func $path_unlink_file (param i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "path_rename"
            (func $path_rename (param i32 i32 i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "path_symlink"
            (func $path_symlink (param i32 i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "path_link"
            (func $path_link (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "path_filestat_set_times"
            (func $path_filestat_set_times (param i32 i32 i32 i32 i64 i64 i32) (result i32)))
          (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
          (memory (export "memory") 1)
          (data (i32.const 64) "file")
          (data (i32.const 96) "new")
          (data (i32.const 128) "dir")
          (func (export "_start") (call $exit {call})))"#
    )
}

/// Each path-mutating preview 1 call refused by a kernel read-only mount reaches the guest as `rofs` (69), not
/// as wasmtime-wasi's `io` (29); the same calls succeed on a writable directory, and a read-only open still
/// works on the read-only mount. Needs root (a real read-only bind mount in a private mount namespace).
#[test]
fn root_read_only_mount_errors_reach_the_guest_as_rofs() {
    const ROFS: i32 = 69;
    let calls = [
        (
            "path_open create",
            "(call $path_open (i32.const 3) (i32.const 0) (i32.const 96) (i32.const 3) (i32.const 1) \
             (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0) (i32.const 256))",
        ),
        (
            "path_open write",
            "(call $path_open (i32.const 3) (i32.const 0) (i32.const 64) (i32.const 4) (i32.const 0) \
             (i64.const 0x40) (i64.const 0) (i32.const 0) (i32.const 256))",
        ),
        (
            "path_create_directory",
            "(call $path_create_directory (i32.const 3) (i32.const 96) (i32.const 3))",
        ),
        (
            "path_remove_directory",
            "(call $path_remove_directory (i32.const 3) (i32.const 128) (i32.const 3))",
        ),
        (
            "path_unlink_file",
            "(call $path_unlink_file (i32.const 3) (i32.const 64) (i32.const 4))",
        ),
        (
            "path_rename",
            "(call $path_rename (i32.const 3) (i32.const 64) (i32.const 4) (i32.const 3) (i32.const 96) \
             (i32.const 3))",
        ),
        (
            "path_symlink",
            "(call $path_symlink (i32.const 64) (i32.const 4) (i32.const 3) (i32.const 96) (i32.const 3))",
        ),
        (
            "path_link",
            "(call $path_link (i32.const 3) (i32.const 0) (i32.const 64) (i32.const 4) (i32.const 3) \
             (i32.const 96) (i32.const 3))",
        ),
        (
            // ATIM_NOW | MTIM_NOW: what touch(1) does first.
            "path_filestat_set_times",
            "(call $path_filestat_set_times (i32.const 3) (i32.const 0) (i32.const 64) (i32.const 4) \
             (i64.const 0) (i64.const 0) (i32.const 10))",
        ),
    ];
    let read_only_open = "(call $path_open (i32.const 3) (i32.const 0) (i32.const 64) (i32.const 4) \
        (i32.const 0) (i64.const 0x2) (i64.const 0) (i32.const 0) (i32.const 256))";
    let dir = tempfile::tempdir().unwrap();
    super::test_mounts::in_private_mount_ns(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let engine = Engine::new().unwrap();
            let cases = calls
                .iter()
                .map(|&(name, call)| (name, call, ROFS))
                .chain([("path_open read", read_only_open, 0)]);
            for (n, (name, call, expected)) in cases.enumerate() {
                let program = compile(&engine, &errno_module(call));
                for read_only in [true, false] {
                    let root = dir.path().join(format!("{n}-{read_only}"));
                    std::fs::create_dir_all(root.join("dir")).unwrap();
                    std::fs::write(root.join("file"), b"x").unwrap();
                    if read_only {
                        super::test_mounts::bind_read_only(&root);
                    }
                    let (mut s, _) = spec(dir.path(), &["x"]);
                    s.preopens = vec![Preopen {
                        host: root.clone(),
                        guest: "/".into(),
                        read_only: false,
                    }];
                    let status = run_to_end(&engine, &program, s).await;
                    let want = if read_only { expected } else { 0 };
                    assert_eq!(
                        status.code, want,
                        "{name}, read_only={read_only}: {status:?}"
                    );
                }
            }
        });
    });
}
