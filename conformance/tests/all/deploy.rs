//! The deployment assets in `deploy/`: install.sh into a staging root (twice, an upgrade, uninstall), the
//! systemd unit through `systemd-analyze verify`, and every YAML file through a YAML parser.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// A stand-in for the wasm-cri binary: install.sh only copies it, so any executable will do, and one whose
/// bytes the test chooses shows which version got installed.
fn stand_in_binary(dir: &Path, version: &str) -> PathBuf {
    let path = dir.join(format!("wasm-cri-{version}"));
    std::fs::write(&path, format!("#!/bin/sh\necho wasm-cri {version}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn install(root: &Path, binary: &Path, extra: &[&str]) -> Output {
    let out = Command::new("bash")
        .arg(deploy_dir().join("install.sh"))
        .arg("--root")
        .arg(root)
        .arg("--binary")
        .arg(binary)
        .args(extra)
        .output()
        .unwrap();
    eprintln!(
        "install.sh {extra:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn install_script_is_idempotent_upgrades_and_uninstalls() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let v1 = stand_in_binary(tmp.path(), "v1");
    let bin = root.join("usr/local/bin/wasm-cri");
    let unit = root.join("etc/systemd/system/wasm-cri.service");
    let config = root.join("etc/wasm-cri/config.toml");
    let crictl_yaml = root.join("etc/wasm-cri/crictl.yaml");

    // A staging root without --no-start would make systemctl act on this machine: refused.
    assert_eq!(install(&root, &v1, &[]).status.code(), Some(2));
    assert!(!bin.exists());

    let out = install(&root, &v1, &["--no-start"]);
    assert!(out.status.success());
    for (path, want_mode, source) in [
        (&bin, 0o755, v1.clone()),
        (&unit, 0o644, deploy_dir().join("wasm-cri.service")),
        // The config may hold registry credentials.
        (&config, 0o600, deploy_dir().join("config.toml")),
        (&crictl_yaml, 0o644, deploy_dir().join("crictl.yaml")),
    ] {
        assert_eq!(
            std::fs::read(path).unwrap(),
            std::fs::read(&source).unwrap(),
            "{}",
            path.display()
        );
        assert_eq!(mode(path), want_mode, "mode of {}", path.display());
    }

    // Second run: nothing is rewritten, and the operator's edit of the config survives.
    let inode = |p: &Path| std::fs::metadata(p).unwrap().ino();
    let (bin_inode, unit_inode) = (inode(&bin), inode(&unit));
    std::fs::write(&config, "log_level = \"debug\"\n").unwrap();
    let out = install(&root, &v1, &["--no-start"]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("installed:"), "{stdout}");
    assert_eq!(inode(&bin), bin_inode);
    assert_eq!(inode(&unit), unit_inode);
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        "log_level = \"debug\"\n"
    );

    // Upgrade: the binary is replaced by a rename (a new inode; a running process keeps the old one), and no
    // temporary file is left behind.
    let v2 = stand_in_binary(tmp.path(), "v2");
    let out = install(&root, &v2, &["--no-start"]);
    assert!(out.status.success());
    assert_ne!(inode(&bin), bin_inode);
    assert_eq!(std::fs::read(&bin).unwrap(), std::fs::read(&v2).unwrap());
    assert_eq!(mode(&bin), 0o755);
    assert_eq!(inode(&unit), unit_inode);
    let leftovers: Vec<_> = std::fs::read_dir(bin.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "wasm-cri")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Uninstall (twice: the second finds nothing to do): binary and unit go, configuration stays.
    for _ in 0..2 {
        let out = install(&root, &v2, &["--no-start", "--uninstall"]);
        assert!(out.status.success());
        assert!(!bin.exists() && !unit.exists());
        assert!(config.exists() && crictl_yaml.exists());
    }
}

#[test]
fn unit_file_passes_systemd_analyze_verify() {
    let text = std::fs::read_to_string(deploy_dir().join("wasm-cri.service")).unwrap();
    let directives: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for want in [
        "Type=notify",
        "KillMode=process",
        "Delegate=yes",
        "Restart=always",
        "ExecStart=/usr/local/bin/wasm-cri --config /etc/wasm-cri/config.toml",
    ] {
        assert!(directives.contains(&want), "unit lacks {want}");
    }
    assert!(directives.iter().any(|d| d.starts_with("LimitNOFILE=")));
    assert!(directives.iter().any(|d| d.starts_with("RestartSec=")));

    let Ok(which) = Command::new("sh")
        .args(["-c", "command -v systemd-analyze"])
        .output()
    else {
        eprintln!("skipping systemd-analyze verify: cannot run sh");
        return;
    };
    if !which.status.success() {
        eprintln!("skipping systemd-analyze verify: systemd-analyze is not installed");
        return;
    }
    // verify also checks that ExecStart's program exists and is executable: point it at a stand-in, so the
    // check does not depend on what this machine has in /usr/local/bin.
    let tmp = tempfile::tempdir().unwrap();
    let bin = stand_in_binary(tmp.path(), "verify");
    let unit = tmp.path().join("wasm-cri.service");
    std::fs::write(
        &unit,
        text.replace("/usr/local/bin/wasm-cri", bin.to_str().unwrap()),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {stderr}");
    // Unknown or misspelt keys are only warnings ("Unknown key name ..., ignoring"): none may appear.
    assert!(stderr.trim().is_empty(), "systemd-analyze verify: {stderr}");
}

/// Loads every YAML document of every `deploy/*.yaml` with PyYAML and prints them as one JSON object keyed
/// by file name.
const YAML_TO_JSON: &str = r#"
import json, sys, yaml
out = {}
for path in sys.argv[1:]:
    with open(path) as f:
        out[path.rsplit("/", 1)[-1]] = list(yaml.safe_load_all(f))
print(json.dumps(out, default=str))
"#;

/// A Python with PyYAML: the one on PATH, else Debian's (python3-yaml, installed by scripts/install-deps).
fn python_with_yaml() -> Option<&'static str> {
    ["python3", "/usr/bin/python3"].into_iter().find(|py| {
        Command::new(py)
            .args(["-c", "import yaml"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

#[test]
fn deploy_yaml_files_parse_and_agree_with_the_daemon_defaults() {
    let Some(python) = python_with_yaml() else {
        eprintln!("skipping: no python3 with PyYAML (Debian package python3-yaml)");
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    let out = Command::new(python)
        .args(["-c", YAML_TO_JSON])
        .args(&files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for f in &files {
        let name = f.file_name().unwrap().to_str().unwrap();
        let list = docs[name].as_array().unwrap();
        assert!(
            !list.is_empty() && list.iter().all(|d| d.is_object()),
            "{name}: every document must be a mapping"
        );
    }

    let socket = "unix:///run/wasm-cri/cri.sock";
    let config = std::fs::read_to_string(deploy_dir().join("config.toml")).unwrap();
    assert!(config.contains(&format!("socket = \"{socket}\"")));
    let crictl = &docs["crictl.yaml"][0];
    assert_eq!(crictl["runtime-endpoint"], socket);
    assert_eq!(crictl["image-endpoint"], socket);
    let kubelet = &docs["kubelet-config.yaml"][0];
    assert_eq!(kubelet["kind"], "KubeletConfiguration");
    assert_eq!(kubelet["containerRuntimeEndpoint"], socket);
    assert_eq!(kubelet["imageServiceEndpoint"], socket);
    assert_eq!(kubelet["cgroupDriver"], "cgroupfs");

    let rc = &docs["runtimeclass.yaml"][0];
    assert_eq!(rc["kind"], "RuntimeClass");
    assert_eq!(rc["handler"], "wasm");
    let label = &rc["scheduling"]["nodeSelector"]["wasm-cri.io/runtime"];
    assert_eq!(label, "wasm");
    let tol = &rc["scheduling"]["tolerations"][0];
    assert_eq!(
        (&tol["key"], &tol["value"], &tol["effect"]),
        (
            &serde_json::json!("wasm-cri.io/runtime"),
            label,
            &serde_json::json!("NoSchedule")
        )
    );

    let ds = docs["installer-daemonset.yaml"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kind"] == "DaemonSet")
        .unwrap();
    let spec = &ds["spec"]["template"]["spec"];
    assert_eq!(spec["hostPID"], true);
    assert_eq!(spec["nodeSelector"]["wasm-cri.io/install"], "true");
    let container = &spec["containers"][0];
    assert_eq!(container["securityContext"]["privileged"], true);
    let script = container["command"][2].as_str().unwrap();
    assert!(
        script.contains("/opt/wasm-cri/install.sh --root /host"),
        "{script}"
    );
    // ... which is where the installer image puts it, next to the files it installs.
    let dockerfile = std::fs::read_to_string(deploy_dir().join("installer.Dockerfile")).unwrap();
    assert!(dockerfile.contains("/opt/wasm-cri/wasm-cri"));
    for f in [
        "install.sh",
        "wasm-cri.service",
        "config.toml",
        "crictl.yaml",
    ] {
        assert!(
            dockerfile.contains(&format!("deploy/{f}")),
            "image lacks {f}"
        );
    }
    // Every host path install.sh writes below --root /host is mounted there.
    let mounts: Vec<&str> = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap())
        .collect();
    for dir in [
        "/host/usr/local/bin",
        "/host/etc/systemd/system",
        "/host/etc/wasm-cri",
    ] {
        assert!(mounts.contains(&dir), "{dir} not mounted: {mounts:?}");
    }
}

/// Stands in for the host in `install.sh --host-exec`: `systemctl` is simulated for the one unit (start runs
/// the installed binary with the installed config, as the unit's ExecStart does, stop sends SIGTERM and
/// waits), every other command runs as it is. Each call is logged.
const FAKE_HOST: &str = r#"#!/bin/bash
set -euo pipefail
echo "$*" >>"$FAKE_DIR/calls.log"
pidfile=$FAKE_DIR/daemon.pid
running() { [[ -f $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }
stop() {
  if running; then
    pid=$(cat "$pidfile"); kill -TERM "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
  fi
  rm -f "$pidfile"
}
start() {
  setsid "$FAKE_ROOT/usr/local/bin/wasm-cri" --config "$FAKE_ROOT/etc/wasm-cri/config.toml" \
    </dev/null >>"$FAKE_DIR/daemon.log" 2>&1 &
  echo $! >"$pidfile"
}
[[ $1 == systemctl ]] || exec "$@"
case "${*:2}" in
  daemon-reload | "enable --quiet wasm-cri.service") ;;
  "is-active --quiet wasm-cri.service") running ;;
  "enable --now wasm-cri.service") running || start ;;
  "restart wasm-cri.service") stop; start ;;
  "disable --now wasm-cri.service") stop ;;
  *) echo "fake systemctl: unexpected: ${*:2}" >&2; exit 1 ;;
esac
"#;

/// Kills the daemon the fake host started, whatever the test's outcome.
struct FakeHost(PathBuf);

impl Drop for FakeHost {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.0.join("daemon.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}

#[test]
fn install_script_starts_restarts_on_upgrade_and_stops_through_host_exec() {
    let bin = conformance::daemon::wasm_cri_bin();
    assert!(
        bin.exists(),
        "{} not found: cargo build -p cri-server",
        bin.display()
    );
    // Short: the daemon's socket path must fit in sun_path.
    let tmp = tempfile::Builder::new().prefix("wcri").tempdir().unwrap();
    let dir = tmp.path();
    let root = dir.join("root");
    let host = FakeHost(dir.to_path_buf());
    let fake = dir.join("host.sh");
    std::fs::write(&fake, FAKE_HOST).unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    // crictl as the host would find it, on PATH.
    let tools = dir.join("tools");
    std::fs::create_dir_all(&tools).unwrap();
    let crictl = conformance::crictl::crictl_bin();
    if crictl.is_absolute() {
        std::os::unix::fs::symlink(&crictl, tools.join("crictl")).unwrap();
    }
    let path = format!(
        "{}:{}",
        tools.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // The operator's config, already in place: install.sh keeps it and takes the socket from it.
    let socket = dir.join("cri.sock");
    std::fs::create_dir_all(root.join("etc/wasm-cri")).unwrap();
    std::fs::write(
        root.join("etc/wasm-cri/config.toml"),
        format!(
            "socket = \"unix://{}\"\nroot = \"{}\"\nstate = \"{}\"\n",
            socket.display(),
            dir.join("var").display(),
            dir.join("run").display()
        ),
    )
    .unwrap();
    let run = |binary: &Path, extra: &[&str]| -> (Output, String) {
        let out = Command::new("bash")
            .arg(deploy_dir().join("install.sh"))
            .arg("--root")
            .arg(&root)
            .arg("--binary")
            .arg(binary)
            .arg("--host-exec")
            .arg(&fake)
            .args(extra)
            .env("FAKE_DIR", dir)
            .env("FAKE_ROOT", &root)
            .env("PATH", &path)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("install.sh {extra:?}: {}\n{text}", out.status);
        (out, text)
    };
    let calls = || std::fs::read_to_string(dir.join("calls.log")).unwrap_or_default();
    let daemon_pid = || std::fs::read_to_string(dir.join("daemon.pid")).unwrap();

    // First install: started, socket served, crictl version answered by the installed daemon.
    let (out, text) = run(&bin, &[]);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(&format!("serving unix://{}", socket.display())));
    assert!(text.contains("RuntimeName:  wasm-cri"), "{text}");
    assert!(calls().contains("systemctl enable --now wasm-cri.service"));
    let first_pid = daemon_pid();

    // Same files again: no restart.
    let (out, text) = run(&bin, &[]);
    assert!(out.status.success(), "{text}");
    assert!(!calls().contains("restart"), "{}", calls());
    assert_eq!(daemon_pid(), first_pid);

    // A new binary (trailing bytes do not change what an ELF file runs): replaced, daemon restarted.
    let mut v2 = std::fs::read(&bin).unwrap();
    v2.push(0);
    let v2_path = dir.join("wasm-cri-v2");
    std::fs::write(&v2_path, v2).unwrap();
    std::fs::set_permissions(&v2_path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (out, text) = run(&v2_path, &[]);
    assert!(out.status.success(), "{text}");
    assert!(calls().contains("systemctl restart wasm-cri.service"));
    assert_ne!(daemon_pid(), first_pid);
    assert!(text.contains("RuntimeName:  wasm-cri"), "{text}");

    // Uninstall with no pods: stopped, files gone, config kept.
    let (out, text) = run(&v2_path, &["--uninstall"]);
    assert!(out.status.success(), "{text}");
    assert!(calls().contains("systemctl disable --now wasm-cri.service"));
    assert!(!socket.exists(), "the stopped daemon removes its socket");
    assert!(!root.join("usr/local/bin/wasm-cri").exists());
    assert!(root.join("etc/wasm-cri/config.toml").exists());
    drop(host);
}

/// The RuntimeClass in deploy/ names handler `wasm`: the daemon runs pods of that handler, advertises it in
/// Status, and refuses a handler meant for another runtime.
#[test]
fn root_runtime_class_handler_wasm_is_served_and_others_refused() {
    if conformance::skip_unless_root() {
        return;
    }
    let d = conformance::Daemon::start(conformance::DaemonOpts::default()).unwrap();
    let info = d.crictl_json(["info"]).unwrap();
    let names: Vec<&str> = info["runtimeHandlers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap_or_default())
        .collect();
    assert!(names.contains(&"wasm"), "{info}");

    let pod = d.pod_config("handler");
    let path = d.write_json("pod-handler", &pod.to_json()).unwrap();
    let pod_id = d
        .crictl_ok([
            std::ffi::OsStr::new("runp"),
            "--runtime".as_ref(),
            "wasm".as_ref(),
            path.as_os_str(),
        ])
        .unwrap();
    let status = d.crictl_json(["inspectp", pod_id.trim()]).unwrap();
    assert_eq!(status["status"]["runtimeHandler"], "wasm", "{status}");

    let other = d.pod_config("handler-runc");
    let path = d.write_json("pod-handler-runc", &other.to_json()).unwrap();
    let out = d
        .crictl([
            std::ffi::OsStr::new("runp"),
            "--runtime".as_ref(),
            "runc".as_ref(),
            path.as_os_str(),
        ])
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("code = InvalidArgument")
            && err.contains(r#"runtime handler \"runc\" is not served"#),
        "{err}"
    );
}
