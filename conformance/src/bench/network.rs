//! `wcri-bench` part 3: RunPodSandbox latency by network backend, each on a daemon of its own with a bridge
//! and subnet private to the run: loopback only (no CNI config, native backend off), the native backend,
//! and Debian's bridge CNI plugin (bridge + host-local + loopback, the same work the native backend does:
//! bridge, veth, address, route). Each run is a fresh pod, stopped and removed afterwards (untimed).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};
use conformance::{Daemon, DaemonOpts};
use serde_json::{Value, json};

use super::{Pods, Stats, connect, remove_pod, round2, run_pod};

/// Where Debian's containernetworking-plugins live.
const CNI_BIN: &str = "/usr/lib/cni";

/// A daemon set up for one backend, and the bridge to delete afterwards.
struct Setup {
    name: &'static str,
    daemon: Daemon,
    bridge: Option<String>,
    _dir: tempfile::TempDir,
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some(bridge) = &self.bridge {
            let _ = Command::new("ip").args(["link", "del", bridge]).output();
        }
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

fn setup(name: &'static str, log: &str) -> Result<Setup> {
    let dir = tempfile::tempdir().context("temp dir")?;
    let conf_dir = dir.path().join("net.d");
    std::fs::create_dir_all(&conf_dir).context("create CNI config dir")?;
    let tag = std::process::id() % 10_000;
    let mut opts = DaemonOpts::default()
        .env("RUST_LOG", log)
        .arg("--cni-conf-dir")
        .arg(conf_dir.to_str().context("temp dir is not UTF-8")?);
    let bridge = match name {
        "native" => {
            let bridge = format!("wcbn{tag}");
            let config = dir.path().join("config.toml");
            write(
                &config,
                &format!("[native_network]\nbridge = \"{bridge}\"\nsubnet = \"10.86.200.0/24\"\n"),
            )?;
            opts = opts
                .arg("--config")
                .arg(config.to_str().context("temp dir is not UTF-8")?);
            opts.native_network = true;
            Some(bridge)
        }
        "cni-bridge" => {
            let bridge = format!("wcbc{tag}");
            let list = json!({
                "cniVersion": "1.0.0",
                "name": "wcri-bench",
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": bridge,
                        "isGateway": true,
                        "ipMasq": false,
                        "ipam": {
                            "type": "host-local",
                            "ranges": [[{"subnet": "10.86.201.0/24"}]],
                            "routes": [{"dst": "0.0.0.0/0"}],
                            "dataDir": dir.path().join("ipam"),
                        }
                    },
                    {"type": "loopback"}
                ]
            });
            write(&conf_dir.join("10-bench.conflist"), &list.to_string())?;
            opts = opts.arg("--cni-bin-dir").arg(CNI_BIN);
            Some(bridge)
        }
        _ => None,
    };
    let daemon = Daemon::start(opts).with_context(|| format!("start wasm-cri for {name}"))?;
    Ok(Setup {
        name,
        daemon,
        bridge,
        _dir: dir,
    })
}

/// Medians (and more) of `runs` RunPodSandbox calls per backend, after one untimed warm-up pod each.
pub async fn bench(runs: usize, log: &str) -> Result<Value> {
    let mut results = serde_json::Map::new();
    for name in ["loopback", "native", "cni-bridge"] {
        let s = setup(name, log)?;
        let mut cri = connect(s.daemon.socket()).await?;
        let pods = Pods {
            logs: s.daemon.dir().join("logs"),
            next: std::cell::Cell::new(0),
        };
        let (id, _) = pods
            .run(&mut cri)
            .await
            .with_context(|| format!("{name}: warm-up pod"))?;
        remove_pod(&mut cri, &id).await?;
        let mut samples = Vec::with_capacity(runs);
        for i in 0..runs {
            let config = pods.next_config()?;
            let t0 = Instant::now();
            let id = run_pod(&mut cri, &config)
                .await
                .with_context(|| format!("{name}: run {i}\n{}", s.daemon.log_tail(20)))?;
            samples.push(t0.elapsed());
            remove_pod(&mut cri, &id).await?;
        }
        let stats = Stats::of(samples.into_iter());
        println!(
            "RunPodSandbox, {} network, {runs} runs: median {:.1} ms (min {:.1}, p90 {:.1}, max {:.1})",
            s.name, stats.median, stats.min, stats.p90, stats.max
        );
        results.insert(
            name.to_string(),
            json!({
                "runs": runs,
                "median": round2(stats.median),
                "min": round2(stats.min),
                "p90": round2(stats.p90),
                "max": round2(stats.max),
            }),
        );
    }
    Ok(Value::Object(results))
}
