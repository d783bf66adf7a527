//! The busybox-style toolbox fixture (`conformance/fixtures/toolbox/`): its shell and applets run
//! in-process by wasmtime over a temp root laid out like the critest busybox image (fast, no root), and
//! as real containers of the critest stand-in images through wasm-cri and crictl (`root_*`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use conformance::crictl::{container_state, inspect, wait_until};
use conformance::critest_images::{self, APPLETS, BUSYBOX_GROUP, BUSYBOX_PASSWD};
use conformance::fixtures::{fixture_path, fixtures_dir};
use conformance::{ContainerConfig, Daemon, DaemonOpts, PodConfig, Registry, skip_unless_root};
use wasmtime::{Config, Engine, Linker, Module, Store, Trap, UpdateDeadline};
use wasmtime_wasi::p1::{self, WasiP1Ctx};
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

// ---------------------------------------------------------------- in-process runs

/// How a run ended: `Ok(code)` (0 when `_start` returned), or the trap (`Interrupt` after the deadline).
#[derive(Debug)]
struct Run {
    exit: Result<i32, Trap>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Asserts exit code `code` and returns stdout.
    fn code(&self, code: i32) -> &str {
        assert_eq!(
            self.exit,
            Ok(code),
            "stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        &self.stdout
    }
}

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
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
        engine
    })
}

fn toolbox_path() -> PathBuf {
    fixture_path(fixtures_dir().unwrap(), "toolbox")
}

fn module() -> &'static Module {
    static MODULE: OnceLock<Module> = OnceLock::new();
    MODULE.get_or_init(|| Module::from_file(engine(), toolbox_path()).unwrap())
}

/// A root file system like the critest busybox image: /bin/busybox, a hard link per applet,
/// /etc/{passwd,group,hostname}, /tmp.
fn rootfs() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let bin = root.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(toolbox_path(), bin.join("busybox")).unwrap();
    for applet in APPLETS {
        std::fs::hard_link(bin.join("busybox"), bin.join(applet)).unwrap();
    }
    let etc = root.path().join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("passwd"), BUSYBOX_PASSWD).unwrap();
    std::fs::write(etc.join("group"), BUSYBOX_GROUP).unwrap();
    std::fs::write(etc.join("hostname"), "toolbox-host\n").unwrap();
    std::fs::create_dir_all(root.path().join("tmp")).unwrap();
    root
}

/// Runs the toolbox with `argv` (argv[0] picks the applet) over `root` pre-opened as `/`, `stdin` as its
/// standard input and `env` on top of PATH. A run still going after `deadline` is interrupted.
fn run_in(
    root: &Path,
    argv: &[&str],
    stdin: &str,
    env: &[(&str, &str)],
    deadline: Duration,
) -> Run {
    let mut linker: Linker<WasiP1Ctx> = Linker::new(engine());
    p1::add_to_linker_sync(&mut linker, |s| s).unwrap();
    // wasmtime's proc_exit refuses codes from 126 up (WASI reserves them for the host); the shell's
    // 126/127 are real exit codes, so this host passes every code through.
    linker.allow_shadowing(true);
    linker
        .func_wrap(
            "wasi_snapshot_preview1",
            "proc_exit",
            |code: i32| -> wasmtime::Result<()> { Err(I32Exit(code).into()) },
        )
        .unwrap();
    let stdout = MemoryOutputPipe::new(1 << 20);
    let stderr = MemoryOutputPipe::new(1 << 20);
    let mut builder = WasiCtxBuilder::new();
    builder
        .args(argv)
        .env("PATH", critest_images::DEFAULT_PATH)
        .env("HOME", "/root")
        .stdin(MemoryInputPipe::new(stdin.as_bytes().to_vec()))
        .stdout(stdout.clone())
        .stderr(stderr.clone());
    for (k, v) in env {
        builder.env(k, v);
    }
    builder
        .preopened_dir(root, "/", FsPerms::ReadWrite)
        .unwrap();
    let mut store = Store::new(engine(), builder.build_p1());
    let end = Instant::now() + deadline;
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        Ok(if Instant::now() >= end {
            UpdateDeadline::Interrupt
        } else {
            UpdateDeadline::Continue(1)
        })
    });
    let instance = linker.instantiate(&mut store, module()).unwrap();
    let start = instance
        .get_typed_func::<(), ()>(&mut store, "_start")
        .unwrap();
    let exit = match start.call(&mut store, ()) {
        Ok(()) => Ok(0),
        Err(e) => match e.downcast_ref::<I32Exit>() {
            Some(I32Exit(code)) => Ok(*code),
            None => Err(*e
                .downcast_ref::<Trap>()
                .unwrap_or_else(|| panic!("{argv:?}: not a trap: {e:?}"))),
        },
    };
    drop(store);
    Run {
        exit,
        stdout: String::from_utf8_lossy(&stdout.contents()).into_owned(),
        stderr: String::from_utf8_lossy(&stderr.contents()).into_owned(),
    }
}

/// Runs `argv` in a fresh [`rootfs`] with no stdin.
fn run(argv: &[&str]) -> Run {
    let root = rootfs();
    run_in(root.path(), argv, "", &[], Duration::from_secs(60))
}

fn sh(script: &str) -> Run {
    run(&["sh", "-c", script])
}

#[test]
fn list_prints_the_applets_the_images_link() {
    let out = run(&["toolbox", "--list"]);
    let listed: Vec<&str> = out.code(0).lines().collect();
    assert_eq!(listed, APPLETS);
    // The multi-call forms: `busybox APPLET`, `/bin/APPLET`, `APPLET.wasm`.
    assert_eq!(run(&["/bin/busybox", "echo", "hi"]).code(0), "hi\n");
    assert_eq!(run(&["/bin/echo", "hi"]).code(0), "hi\n");
    assert_eq!(run(&["echo.wasm", "hi"]).code(0), "hi\n");
    let unknown = run(&["mount", "/x"]);
    assert_eq!(unknown.exit, Ok(127));
    assert!(
        unknown.stderr.contains("applet not found: mount"),
        "{}",
        unknown.stderr
    );
}

#[test]
fn shell_runs_the_critest_style_one_liner() {
    let out = sh(
        r#"echo a && false || echo b; [ -f /bin/sh ] && echo yes; x=$(echo hi); echo "$x" | grep -q hi && echo found"#,
    );
    assert_eq!(out.code(0), "a\nb\nyes\nfound\n");
}

#[test]
fn shell_reads_a_script_from_stdin_without_a_prompt() {
    let root = rootfs();
    let script = "echo one\nif true\nthen\n  echo two\nfi\nx=3\necho $x\nexit 4\necho never\n";
    let out = run_in(
        root.path(),
        &["/bin/sh"],
        script,
        &[],
        Duration::from_secs(60),
    );
    assert_eq!(out.code(4), "one\ntwo\n3\n");
    assert_eq!(out.stderr, "");
    // EOF ends the shell with the last status; an unfinished command is a syntax error (2).
    let out = run_in(
        root.path(),
        &["sh"],
        "echo -n hello\nfalse\n",
        &[],
        Duration::from_secs(60),
    );
    assert_eq!(out.code(1), "hello");
    let out = run_in(
        root.path(),
        &["sh"],
        "echo \"open\n",
        &[],
        Duration::from_secs(60),
    );
    assert_eq!(out.code(2), "");
    assert!(
        out.stderr.contains("unterminated quoted string"),
        "{}",
        out.stderr
    );
}

#[test]
fn shell_reports_missing_commands_like_ash() {
    let out = sh("nosuch arg; echo $?; /bin/nosuch; echo $?; /tmp; echo $?");
    assert_eq!(out.code(0), "127\n127\n126\n");
    assert_eq!(
        out.stderr,
        "sh: nosuch: not found\nsh: /bin/nosuch: not found\nsh: /tmp: Permission denied\n"
    );
    // Exit codes pass through, `exit` without a number keeps $?.
    assert_eq!(sh("exit 7").exit, Ok(7));
    assert_eq!(sh("false; exit").exit, Ok(1));
    assert_eq!(sh("true && (exit 3)").exit, Ok(3));
    // A PATH without the applet's link means not found, as on Linux (echo is a builtin, cat is not).
    let out =
        sh("PATH=/nowhere; echo hi; cat /etc/hostname; echo $?; PATH=/bin; cat /etc/hostname");
    assert_eq!(out.code(0), "hi\n127\ntoolbox-host\n");
    assert_eq!(out.stderr, "sh: cat: not found\n");
}

/// A PATH entry that exists but is not a regular file (a masked path is a bind of /dev/null) is skipped, as ash
/// does: a later regular file still runs, none means "Permission denied" and 127, prefixed with the shell's $0.
/// With hard-linked applets, replacing /bin/ls leaves /bin/sh (the same busybox) working.
#[test]
fn shell_skips_path_entries_that_are_not_regular_files() {
    let root = rootfs();
    let ls = root.path().join("bin/ls");
    std::fs::remove_file(&ls).unwrap();
    nix::unistd::mkfifo(&ls, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    std::fs::create_dir_all(root.path().join("usr/local/bin/cat")).unwrap();
    let run = |argv: &[&str]| run_in(root.path(), argv, "", &[], Duration::from_secs(60));

    let out = run(&["/bin/sh", "-c", "ls"]);
    assert_eq!(out.code(127), "");
    assert_eq!(out.stderr, "/bin/sh: ls: Permission denied\n");
    let out = run(&["sh", "-c", "ls /; echo $?; cat /etc/hostname", "myname"]);
    assert_eq!(out.code(0), "127\ntoolbox-host\n");
    assert_eq!(out.stderr, "myname: ls: Permission denied\n");
    // A path given with '/' is executed as is: a non-regular file there is 126, as an exec failing with EACCES.
    let out = run(&["sh", "-c", "/usr/local/bin/cat; echo $?"]);
    assert_eq!(out.code(0), "126\n");
    assert_eq!(out.stderr, "sh: /usr/local/bin/cat: Permission denied\n");
    // env reports like busybox env.
    let out = run(&["env", "ls"]);
    assert_eq!(out.code(126), "");
    assert_eq!(out.stderr, "env: can't execute 'ls': Permission denied\n");
    let out = run(&["env", "nosuch"]);
    assert_eq!(out.code(127), "");
    assert_eq!(
        out.stderr,
        "env: can't execute 'nosuch': No such file or directory\n"
    );
}

#[test]
fn shell_loops_conditionals_quotes_and_expansions() {
    let out = sh(r#"
        for i in 1 2 3; do [ $i = 2 ] && continue; echo "i=$i"; done
        n=; while true; do n="${n}x"; if [ "$n" = xxx ]; then break; fi; done; echo "$n ${#n}"
        until [ -f /tmp/flag ]; do touch /tmp/flag; done; echo 'single $n' "double $n" \$n
        if false; then echo no; elif ! false; then echo elif; else echo else; fi
        echo ${UNSET:-default} ${n:+set}; v=`echo back`; echo $v
        set -- a "b c"; echo $#; for a in "$@"; do echo "[$a]"; done
        x=1; (x=2; cd /tmp); echo $x $(pwd)
        echo "$(echo $(echo nested) x)"
    "#);
    assert_eq!(
        out.code(0),
        "i=1\ni=3\nxxx 3\nsingle $n double xxx $n\nelif\ndefault set\nback\n2\n[a]\n[b c]\n1 /\nnested x\n"
    );
}

#[test]
fn shell_redirections_pipes_and_files() {
    let out = sh(r#"
        echo x > /tmp/f; echo y >> /tmp/f; cat /tmp/f; ls -A /tmp
        cat < /tmp/f | wc -l
        rm /tmp/f; ls -A /tmp | wc -l
        echo to-stderr >&2 2>/dev/null
        ls /nope 2>&1 | grep -q "No such file" && echo grep-ok
        echo hi > /nodir/f; echo "status $?"
        mkdir -p /tmp/a/b && touch /tmp/a/b/c && ls /tmp/a/b; rm -r /tmp/a; [ -e /tmp/a ] || echo removed
        touch test.go && [ -f test.go ] && echo 'Found'
    "#);
    assert_eq!(
        out.code(0),
        "x\ny\nf\n2\n0\ngrep-ok\nstatus 1\nc\nremoved\nFound\n"
    );
    assert_eq!(
        out.stderr,
        "to-stderr\nsh: can't create /nodir/f: No such file or directory\n"
    );
}

#[test]
fn shell_refuses_what_it_cannot_do_instead_of_faking_it() {
    for (script, msg) in [
        ("sleep 1 &", "background jobs (&) are not supported"),
        ("cat <<EOF", "here-documents (<<) are not supported"),
        ("echo $$", "$$: not supported (WASI has no process ids)"),
        (
            "echo $((1+1))",
            "arithmetic expansion $((...)) is not supported",
        ),
        ("f() { :; }", "functions are not supported"),
        ("/bin/busybox2", "not found"),
    ] {
        let out = sh(script);
        assert_ne!(out.exit, Ok(0), "{script}");
        assert!(out.stderr.contains(msg), "{script}: {}", out.stderr);
    }
    // A file on PATH that is not one of the toolbox's applets cannot be started from Wasm.
    let root = rootfs();
    std::fs::write(root.path().join("bin/other"), b"\0asm").unwrap();
    let out = run_in(
        root.path(),
        &["sh", "-c", "other"],
        "",
        &[],
        Duration::from_secs(60),
    );
    assert_eq!(out.exit, Ok(126));
    assert!(
        out.stderr.contains("/bin/other: cannot run"),
        "{}",
        out.stderr
    );
}

#[test]
fn file_applets_cat_ls_dd_head_tail_wc() {
    let out = sh(r#"
        dd if=/dev/zero of=/tmp/z bs=1k count=3 2>/dev/null && wc -c < /tmp/z
        dd if=/tmp/z bs=1000 count=2 status=none | wc -c
        printf '1\n2\n3\n4\n5\n' > /tmp/n; head -n 2 /tmp/n; tail -n 2 /tmp/n; tail -n +5 /tmp/n; head -c 3 /tmp/n | wc -c
        ls /etc; ls -A /; cat /etc/hostname /nope; echo "cat $?"
    "#);
    assert_eq!(
        out.code(0),
        "3072\n2000\n1\n2\n4\n5\n5\n3\ngroup\nhostname\npasswd\nbin\netc\ntmp\ntoolbox-host\ncat 1\n"
    );
    assert_eq!(out.stderr, "cat: /nope: No such file or directory\n");
    let dd = run(&["dd", "if=/dev/zero", "of=/tmp/z", "bs=512", "count=2"]);
    dd.code(0);
    assert_eq!(
        dd.stderr,
        "2+0 records in\n2+0 records out\n1024 bytes copied\n"
    );
}

#[test]
fn text_applets_echo_printf_grep_test() {
    let out = sh(r#"
        echo -n no-newline; echo; echo -e 'a\tb\nc'; echo -x
        printf '%s=%d|%5s|%-3s|%x\n' k 42 r l 255; printf '%s\n' a b
        printf 'a\nb\nc\n' | grep -v b; printf 'abc\nxyz\n' | grep -E '^(x|q)'; printf 'A\n' | grep -i a
        echo x | grep -q y; echo "grep $?"; grep -c root /etc/passwd
        [ 1 -lt 2 ] && [ abc != abd ] && test -d /tmp && ! test -s /nope && echo tests-ok
        [ 1 -lt 2; echo "bracket $?"
    "#);
    assert_eq!(
        out.code(0),
        "no-newline\na\tb\nc\n-x\nk=42|    r|l  |ff\na\nb\na\nc\nxyz\nA\ngrep 1\n1\ntests-ok\nbracket 2\n"
    );
    assert_eq!(out.stderr, "[: missing ]\n");
}

#[test]
fn hostname_reads_etc_hostname_and_refuses_to_set_it() {
    assert_eq!(run(&["hostname"]).code(0), "toolbox-host\n");
    let set = run(&["hostname", "ANewHostName"]);
    assert_eq!(set.exit, Ok(1));
    assert!(
        set.stderr
            .contains("cannot set the hostname to 'ANewHostName'"),
        "{}",
        set.stderr
    );
}

#[test]
fn id_pgrep_netstat_ipcs_read_proc_or_say_it_is_missing() {
    // No /proc: id fails honestly, pgrep finds nothing, netstat and ipcs say what they could not read.
    let out = sh("id -u; echo \"id $?\"; pgrep sleep || echo none; pidof nginx; echo \"pidof $?\"");
    assert_eq!(out.code(0), "id 1\nnone\npidof 1\n");
    assert!(
        out.stderr.contains(
            "id: cannot determine the user and groups: /proc/self/status: No such file or directory"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(run(&["netstat", "-ln"]).exit, Ok(1));
    assert_eq!(run(&["ipcs", "-m"]).exit, Ok(1));

    // With what a runtime could expose under /proc.
    let root = rootfs();
    let proc = root.path().join("proc");
    std::fs::create_dir_all(proc.join("self")).unwrap();
    std::fs::create_dir_all(proc.join("net")).unwrap();
    std::fs::create_dir_all(proc.join("sysvipc")).unwrap();
    std::fs::create_dir_all(proc.join("1")).unwrap();
    std::fs::write(
        proc.join("self/status"),
        "Name:\tsh\nUid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\nGroups:\t1000 1234 33 \n",
    )
    .unwrap();
    std::fs::write(
        proc.join("net/tcp"),
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   \
         0: 00000000:2EE3 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n   \
         1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0\n",
    )
    .unwrap();
    std::fs::write(
        proc.join("sysvipc/shm"),
        "       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap\n         \
         0      32769  1600               1048576  1234     0      0     0     0     0     0          0          0 1700000000                     0                     0\n",
    )
    .unwrap();
    std::fs::write(proc.join("1/comm"), "nginx\n").unwrap();
    std::fs::write(proc.join("1/cmdline"), "nginx: master process nginx\0-g\0").unwrap();
    let out = run_in(
        root.path(),
        &[
            "sh",
            "-c",
            "echo $(id -u):$(id -g); id -G; id -nu; id -nG; pgrep nginx; pidof nginx; cat /proc/1/cmdline | grep -c 'master process'",
        ],
        "",
        &[],
        Duration::from_secs(60),
    );
    assert_eq!(
        out.code(0),
        "1000:1000\n1000 1234 33\n1000\n1000 1234 www-data\n1\n1\n1\n"
    );
    let netstat = run_in(
        root.path(),
        &["netstat", "-ln"],
        "",
        &[],
        Duration::from_secs(60),
    );
    let text = netstat.code(0);
    assert!(
        text.contains("0.0.0.0:12003") && text.contains("LISTEN"),
        "{text}"
    );
    assert!(!text.contains(":8080"), "{text}");
    let ipcs = run_in(
        root.path(),
        &["ipcs", "-m"],
        "",
        &[],
        Duration::from_secs(60),
    );
    assert!(
        ipcs.code(0)
            .contains("0x00000000 32769      root       600        1048576"),
        "{}",
        ipcs.stdout
    );
}

#[test]
fn httpd_serves_files_in_inetd_mode_and_needs_a_socket_otherwise() {
    let root = rootfs();
    std::fs::create_dir_all(root.path().join("www/sub")).unwrap();
    std::fs::write(root.path().join("www/index.html"), "<h1>hi</h1>\n").unwrap();
    std::fs::write(root.path().join("www/sub/a.txt"), "text").unwrap();
    let get = |target: &str| {
        let request = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
        run_in(
            root.path(),
            &["httpd", "-i"],
            &request,
            &[],
            Duration::from_secs(60),
        )
    };
    let index = get("/");
    let text = index.code(0);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        text.contains("Content-Type: text/html\r\nContent-Length: 12\r\n"),
        "{text}"
    );
    assert!(text.ends_with("\r\n\r\n<h1>hi</h1>\n"), "{text}");
    assert!(
        get("/sub/a.txt")
            .code(0)
            .ends_with("text/plain\r\nContent-Length: 4\r\nConnection: close\r\n\r\ntext")
    );
    assert!(
        get("/nope")
            .code(0)
            .starts_with("HTTP/1.1 404 Not Found\r\n")
    );
    assert!(
        get("/../etc/passwd")
            .code(0)
            .starts_with("HTTP/1.1 403 Forbidden\r\n")
    );
    assert!(
        get("/%2e%2e/etc/passwd")
            .code(0)
            .starts_with("HTTP/1.1 403 Forbidden\r\n")
    );
    let post = run_in(
        root.path(),
        &["httpd", "-i"],
        "POST / HTTP/1.1\r\n\r\n",
        &[],
        Duration::from_secs(60),
    );
    assert!(post.code(0).starts_with("HTTP/1.1 501 Not Implemented\r\n"));

    let no_socket = run_in(
        root.path(),
        &["httpd", "-f", "-p", "80"],
        "",
        &[],
        Duration::from_secs(60),
    );
    assert_eq!(no_socket.exit, Ok(1));
    assert_eq!(
        no_socket.stderr,
        "httpd: no pre-opened listening socket (LISTEN_FDS unset)\n"
    );
}

#[test]
fn sleep_takes_fractions_and_top_runs_until_stopped() {
    let started = Instant::now();
    assert_eq!(sh("sleep 0.2; sleep 0.1s; echo slept").code(0), "slept\n");
    assert!(started.elapsed() >= Duration::from_millis(300));
    let bad = run(&["sleep", "1x"]);
    assert_eq!(bad.exit, Ok(1));
    assert_eq!(bad.stderr, "sleep: invalid number '1x'\n");

    let root = rootfs();
    let top = run_in(
        root.path(),
        &["sh", "-c", "top"],
        "",
        &[],
        Duration::from_millis(500),
    );
    assert_eq!(top.exit, Err(Trap::Interrupt));
    assert!(
        top.stdout.starts_with("top - toolbox (WebAssembly)"),
        "{}",
        top.stdout
    );
    let forever = run_in(
        root.path(),
        &["sleep", "infinity"],
        "",
        &[],
        Duration::from_millis(300),
    );
    assert_eq!(forever.exit, Err(Trap::Interrupt));
}

#[test]
fn env_runs_commands_with_changed_environment() {
    let root = rootfs();
    let out = run_in(
        root.path(),
        &[
            "sh",
            "-c",
            "env | grep ^GREETING=; env A=1 sh -c 'echo $A $GREETING'; echo ${A:-unset}; A=2 env | grep ^A=",
        ],
        "",
        &[("GREETING", "hi")],
        Duration::from_secs(60),
    );
    assert_eq!(out.code(0), "GREETING=hi\n1 hi\nunset\nA=2\n");
    // $PWD is the working directory the runtime asked for.
    let out = run_in(
        root.path(),
        &["sh", "-c", "pwd; ls hostname"],
        "",
        &[("PWD", "/etc")],
        Duration::from_secs(60),
    );
    assert_eq!(out.code(0), "/etc\nhostname\n");
}

// ---------------------------------------------------------------- through wasm-cri and crictl

/// The CRI log of a container as `(stream, line)` pairs, partial lines joined.
fn log_lines(path: &Path) -> Vec<(String, String)> {
    let raw = std::fs::read_to_string(path).unwrap_or_default();
    let mut out: Vec<(String, String)> = Vec::new();
    let mut partial: Option<(String, String)> = None;
    for line in raw.lines() {
        let mut f = line.splitn(4, ' ');
        let (_, stream, tag) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        let text = f.next().unwrap_or("");
        let mut cur = partial
            .take()
            .unwrap_or_else(|| (stream.to_string(), String::new()));
        cur.1.push_str(text);
        if tag == "P" {
            partial = Some(cur);
        } else {
            out.push(cur);
        }
    }
    out.extend(partial);
    out
}

fn stdout_of(path: &Path) -> Vec<String> {
    log_lines(path)
        .into_iter()
        .filter(|(s, _)| s == "stdout")
        .map(|(_, l)| l)
        .collect()
}

fn stderr_of(path: &Path) -> Vec<String> {
    log_lines(path)
        .into_iter()
        .filter(|(s, _)| s == "stderr")
        .map(|(_, l)| l)
        .collect()
}

fn exit_code(d: &Daemon, id: &str) -> i64 {
    wait_until("container exits", Duration::from_secs(120), || {
        Ok(container_state(&d.endpoint(), id)? == "CONTAINER_EXITED")
    })
    .unwrap_or_else(|e| panic!("{e:#}\n--- daemon log:\n{}", d.log_tail(60)));
    let v = inspect(&d.endpoint(), id).unwrap();
    v["status"]["exitCode"].as_i64().unwrap_or(-1)
}

/// Waits for the container to exit and checks its exit code, showing its status and log if it differs.
fn assert_exit(d: &Daemon, c: &Started, code: i64) {
    let got = exit_code(d, &c.id);
    if got != code {
        let status = inspect(&d.endpoint(), &c.id).unwrap();
        panic!(
            "exit code {got}, want {code}\nstatus: {}\nlog: {:?}",
            status["status"],
            log_lines(&c.log)
        );
    }
}

/// A registry holding the critest stand-in images and a daemon that may pull from it.
fn critest_setup() -> (Registry, Daemon) {
    let registry = Registry::start().unwrap();
    let (addr, toolbox) = (registry.addr().to_string(), toolbox_path());
    conformance::block_on(
        async move { critest_images::push_critest_images(&addr, &toolbox).await },
    )
    .unwrap();
    let daemon = Daemon::start(DaemonOpts::with_registry(registry.addr())).unwrap();
    (registry, daemon)
}

struct Started {
    id: String,
    log: PathBuf,
}

fn start(
    d: &Daemon,
    pod_id: &str,
    pod: &PodConfig,
    name: &str,
    image: &str,
    command: &[&str],
) -> Started {
    let c = ContainerConfig::new(name, image).command(command.iter().copied());
    let id = d.create_container(pod_id, &c, pod).unwrap();
    d.start_container(&id).unwrap();
    Started {
        id,
        log: d.container_log_path(pod, &c).unwrap(),
    }
}

#[test]
fn root_busybox_image_runs_critest_commands() {
    if skip_unless_root() {
        return;
    }
    let (reg, d) = critest_setup();
    let image = reg.image_ref("e2e-test-images/busybox:1.29-2");
    d.pull(&image).unwrap();
    let pod = d
        .pod_config("toolbox")
        .hostname("toolbox-pod")
        .dns(conformance::DnsConfig {
            servers: vec!["10.0.0.10".into(), "10.0.0.11".into()],
            searches: vec!["ns.svc.cluster.local".into(), "svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        });
    let pod_id = d.run_pod(&pod).unwrap();

    // Started together so their (slow, debug-build) compiles overlap.
    let one_liner = start(
        &d,
        &pod_id,
        &pod,
        "one-liner",
        &image,
        &[
            "sh",
            "-c",
            r#"echo a && false || echo b; [ -f /bin/sh ] && echo yes; x=$(echo hi); echo "$x" | grep -q hi && echo found"#,
        ],
    );
    let exit3 = start(
        &d,
        &pod_id,
        &pod,
        "exit3",
        &image,
        &["sh", "-c", "sleep 0.1; echo slept; exit 3"],
    );
    let echo = start(&d, &pod_id, &pod, "echo", &image, &["echo", "-n", "hello"]);
    let hostname = start(&d, &pod_id, &pod, "hostname", &image, &["hostname"]);
    let ls = start(&d, &pod_id, &pod, "ls", &image, &["ls", "-A", "/etc"]);
    let resolv = start(
        &d,
        &pod_id,
        &pod,
        "resolv",
        &image,
        &["cat", "/etc/resolv.conf"],
    );
    let files = start(
        &d,
        &pod_id,
        &pod,
        "files",
        &image,
        &[
            "sh",
            "-c",
            "dd if=/dev/zero of=/tmp/z bs=1k count=4 status=none && wc -c < /tmp/z && cat /etc/hostname && \
         touch test.go && [ -f test.go ] && echo 'Found'",
        ],
    );
    let id = start(
        &d,
        &pod_id,
        &pod,
        "id",
        &image,
        &["sh", "-c", "echo $(id -u):$(id -g)"],
    );

    assert_exit(&d, &one_liner, 0);
    assert_eq!(stdout_of(&one_liner.log), ["a", "b", "yes", "found"]);
    assert_exit(&d, &exit3, 3);
    assert_eq!(stdout_of(&exit3.log), ["slept"]);
    assert_exit(&d, &echo, 0);
    assert_eq!(stdout_of(&echo.log), ["hello"]);
    assert_exit(&d, &hostname, 0);
    assert_eq!(stdout_of(&hostname.log), ["toolbox-pod"]);
    assert_exit(&d, &ls, 0);
    let etc = stdout_of(&ls.log);
    for want in ["group", "hostname", "hosts", "passwd", "resolv.conf"] {
        assert!(etc.iter().any(|l| l == want), "{want} missing from {etc:?}");
    }
    // The container's resolv.conf is the pod's DnsConfig, as the kubelet computed it.
    assert_exit(&d, &resolv, 0);
    assert_eq!(
        stdout_of(&resolv.log),
        [
            "search ns.svc.cluster.local svc.cluster.local",
            "nameserver 10.0.0.10",
            "nameserver 10.0.0.11",
            "options ndots:5"
        ]
    );
    assert_exit(&d, &files, 0);
    assert_eq!(stdout_of(&files.log), ["4096", "toolbox-pod", "Found"]);
    // id reads /proc/self/status: either the runtime provides it, or id says it cannot tell.
    let code = exit_code(&d, &id.id);
    let out = stdout_of(&id.log);
    if out.first().is_some_and(|l| l != ":") {
        assert_eq!(code, 0);
        assert!(
            out[0].split(':').all(|n| n.parse::<u32>().is_ok()),
            "{out:?}"
        );
    } else {
        assert!(
            stderr_of(&id.log)
                .iter()
                .any(|l| l.starts_with("id: cannot determine the user and groups")),
            "{:?}",
            log_lines(&id.log)
        );
    }
}

/// The shell's "not found" is exit code 127 in the container status too (wasmtime's own `proc_exit`
/// refuses codes from 126 up, so the runtime has to pass them through itself).
#[test]
fn root_command_not_found_exits_127() {
    if skip_unless_root() {
        return;
    }
    let (reg, d) = critest_setup();
    let image = reg.image_ref("e2e-test-images/busybox:1.29-2");
    d.pull(&image).unwrap();
    let pod = d.pod_config("toolbox-127");
    let pod_id = d.run_pod(&pod).unwrap();
    let missing = start(
        &d,
        &pod_id,
        &pod,
        "missing",
        &image,
        &["sh", "-c", "nosuch"],
    );
    assert_exit(&d, &missing, 127);
    assert_eq!(stderr_of(&missing.log), ["sh: nosuch: not found"]);
}

/// What critest's ReadOnlyRootfs, ReadonlyPaths, MaskedPaths and recursive read-only mount specs check, through
/// the real daemon with the busybox stand-in: the kernel's EROFS reaches `touch` as "Read-only file system",
/// and masking `/bin/ls` (a hard link to busybox) hides ls but not the shell.
#[test]
fn root_read_only_and_masked_paths_behave_like_busybox() {
    if skip_unless_root() {
        return;
    }
    let (reg, d) = critest_setup();
    let image = reg.image_ref("e2e-test-images/busybox:1.29-2");
    d.pull(&image).unwrap();
    // critest's recursive read-only volume: a host directory with a tmpfs mounted below it.
    let host = tempfile::tempdir().unwrap();
    let sub = host.path().join("tmpfs");
    std::fs::create_dir_all(&sub).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &sub,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let _unmount = Unmount(sub);
    let pod = d.pod_config("toolbox-ro");
    let pod_id = d.run_pod(&pod).unwrap();

    let c = ContainerConfig::new("ro-rootfs", &image)
        .command([
            "sh",
            "-c",
            "touch test.go && [ -f test.go ] && echo 'Found'",
        ])
        .readonly_rootfs();
    let id = d.create_container(&pod_id, &c, &pod).unwrap();
    d.start_container(&id).unwrap();
    let ro_rootfs = Started {
        id,
        log: d.container_log_path(&pod, &c).unwrap(),
    };
    let c = ContainerConfig::new("paths", &image)
        .command(["sh", "-c", "top"])
        .masked_path("/bin/ls")
        .readonly_path("/tmp")
        .mount_rro("/mnt", host.path());
    let id = d.create_container(&pod_id, &c, &pod).unwrap();
    d.start_container(&id).unwrap();

    assert_exit(&d, &ro_rootfs, 1);
    assert_eq!(
        stderr_of(&ro_rootfs.log),
        ["touch: test.go: Read-only file system"]
    );

    wait_until("container runs", Duration::from_secs(120), || {
        Ok(container_state(&d.endpoint(), &id)? == "CONTAINER_RUNNING")
    })
    .unwrap();
    let cri = crate::client::Cri::connect(d.socket());
    let exec = |cmd: &[&str]| {
        let mut rt = cri.runtime.clone();
        let req = proto::cri::ExecSyncRequest {
            container_id: id.clone(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: 60,
        };
        let r = cri
            .run(async move { rt.exec_sync(req).await.map(|r| r.into_inner()) })
            .unwrap();
        (
            r.exit_code,
            String::from_utf8_lossy(&r.stdout).into_owned(),
            String::from_utf8_lossy(&r.stderr).into_owned(),
        )
    };
    let (code, _, err) = exec(&["/bin/sh", "-c", "ls"]);
    assert_eq!(
        (code, err.as_str()),
        (127, "/bin/sh: ls: Permission denied\n")
    );
    let (code, out, _) = exec(&["/bin/sh", "-c", "echo still here; cat /bin/ls | wc -c"]);
    assert_eq!((code, out.as_str()), (0, "still here\n0\n"));
    let (code, _, err) = exec(&["touch", "/tmp/test"]);
    assert_eq!(
        (code, err.as_str()),
        (1, "touch: /tmp/test: Read-only file system\n")
    );
    let (code, out, err) = exec(&[
        "sh",
        "-c",
        r#"touch /mnt/tmpfs/foo 2>&1 | grep -q "Read-only file system" && echo refused"#,
    ]);
    assert_eq!((code, out.as_str()), (0, "refused\n"), "{err}");
}

#[test]
fn root_pause_command_runs_until_stopped() {
    if skip_unless_root() {
        return;
    }
    let (reg, d) = critest_setup();
    let image = reg.image_ref("e2e-test-images/busybox:1.29-2");
    d.pull(&image).unwrap();
    let pod = d.pod_config("toolbox-top");
    let pod_id = d.run_pod(&pod).unwrap();
    // critest's pauseCmd and its loop logger.
    let top = start(&d, &pod_id, &pod, "top", &image, &["sh", "-c", "top"]);
    let logger = start(
        &d,
        &pod_id,
        &pod,
        "logger",
        &image,
        &["sh", "-c", "while true; do echo hello wasm; sleep 1; done"],
    );
    wait_until("top prints its header", Duration::from_secs(120), || {
        Ok(stdout_of(&top.log)
            .iter()
            .any(|l| l.starts_with("top - toolbox")))
    })
    .unwrap();
    wait_until("the loop logs twice", Duration::from_secs(120), || {
        Ok(stdout_of(&logger.log).len() >= 2)
    })
    .unwrap();
    for c in [&top, &logger] {
        assert_eq!(
            container_state(&d.endpoint(), &c.id).unwrap(),
            "CONTAINER_RUNNING"
        );
        d.crictl_ok(["stop", &c.id]).unwrap();
        assert_exit(&d, c, 137);
    }
    assert!(stdout_of(&logger.log).iter().all(|l| l == "hello wasm"));
}

#[test]
fn root_critest_names_resolve_through_a_registry_mirror() {
    if skip_unless_root() {
        return;
    }
    let registry = Registry::start().unwrap();
    let (addr, toolbox) = (registry.addr().to_string(), toolbox_path());
    let pushed =
        conformance::block_on(
            async move { critest_images::push_critest_images(&addr, &toolbox).await },
        )
        .unwrap();
    let config = tempfile::NamedTempFile::new().unwrap();
    let mut toml = String::new();
    for host in ["registry.k8s.io", "k8s.gcr.io", "gcr.io", "public.ecr.aws"] {
        toml.push_str(&format!(
            "[registries.\"{host}\"]\nmirrors = [\"http://{}\"]\nfallback_to_origin = false\n\n",
            registry.addr()
        ));
    }
    std::fs::write(config.path(), toml).unwrap();
    let d = Daemon::start(
        DaemonOpts::default()
            .arg("--config")
            .arg(&config.path().to_string_lossy()),
    )
    .unwrap();
    let digest_of = |name: &str| {
        pushed
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, digest)| digest.clone())
            .unwrap()
    };
    for (reference, name) in [
        (
            "registry.k8s.io/e2e-test-images/busybox:1.29-2",
            "e2e-test-images/busybox:1.29-2",
        ),
        (
            "gcr.io/k8s-staging-cri-tools/test-image-latest",
            "k8s-staging-cri-tools/test-image-latest:latest",
        ),
        (
            "gcr.io/k8s-staging-cri-tools/test-image-tags:2",
            "k8s-staging-cri-tools/test-image-tags:2",
        ),
        ("registry.k8s.io/pause:3.9", "pause:3.9"),
        ("k8s.gcr.io/pause:3.9", "pause:3.9"),
    ] {
        d.pull(reference)
            .unwrap_or_else(|e| panic!("{e:#}\n{}", d.log_tail(40)));
        let status = conformance::crictl::inspecti(&d.endpoint(), reference).unwrap();
        let digests = status["status"]["repoDigests"].to_string();
        assert!(digests.contains(&digest_of(name)), "{reference}: {status}");
    }
    // test-image-tags:1/2/3 is one image; test-image-1/2/3 are three.
    assert_eq!(
        digest_of("k8s-staging-cri-tools/test-image-tags:1"),
        digest_of("k8s-staging-cri-tools/test-image-tags:3")
    );
    assert_ne!(
        digest_of("k8s-staging-cri-tools/test-image-1:latest"),
        digest_of("k8s-staging-cri-tools/test-image-2:latest")
    );
}
