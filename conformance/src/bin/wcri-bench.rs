//! `wcri-bench`: pod start latency and memory of a real `wasm-cri` daemon, measured through a direct CRI
//! gRPC client (a crictl process per call would dominate the numbers). Run by hand as root through
//! `conformance/bench.sh`, which builds release binaries first; not part of the test suite.
//!
//! ```text
//! wcri-bench [--runs 20] [--warmup 1] [--pods 10] [--settle-ms 2000] [--network-runs 50]
//!            [--precompile-runs 5] [--precompile-functions 15000]
//! ```
//!
//! 1. Pod start: RunPodSandbox → CreateContainer(hello) → StartContainer → ContainerStatus polled every
//!    2 ms until CONTAINER_EXITED, each run a fresh pod (unique uid); the image is pulled once up front and
//!    stopping/removing the pod afterwards is not timed.
//! 2. Memory: `--pods` pods with one idle `sleeper` container each; after `--settle-ms`, PSS and RSS of the
//!    daemon and of every `wasm-cri pod` process from `/proc/<pid>/smaps_rollup`.
//!
//! 3. RunPodSandbox latency by network backend (`--network-runs`, 0 skips it): loopback only, the native
//!    backend and the bridge CNI plugin, each on a daemon of its own (`conformance/src/bench/network.rs`).
//!
//! 4. Pull + first start of a multi-megabyte module with and without the precompile cache
//!    (`--precompile-runs`, 0 skips it; `conformance/src/bench/precompile.rs`).
//!
//! Prints one line per result and a final line of JSON with the same numbers.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use conformance::{Daemon, DaemonOpts, Registry};
use hyper_util::rt::TokioIo;
use proto::cri::image_service_client::ImageServiceClient;
use proto::cri::runtime_service_client::RuntimeServiceClient;
use proto::cri::{
    ContainerConfig, ContainerMetadata, ContainerState, ContainerStatusRequest,
    CreateContainerRequest, ImageSpec, PodSandboxConfig, PodSandboxMetadata,
    PodSandboxStatusRequest, PullImageRequest, RemovePodSandboxRequest, RunPodSandboxRequest,
    StartContainerRequest, StopPodSandboxRequest,
};
use serde_json::json;
use tonic::transport::{Channel, Endpoint, Uri};

#[derive(Parser)]
#[command(about = "measure wasm-cri pod start latency and memory per pod (needs root)")]
struct Cli {
    /// Timed pod starts.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// Untimed pod starts before the timed ones (reported separately as the cold start).
    #[arg(long, default_value_t = 1)]
    warmup: usize,
    /// Idle sleeper pods for the memory measurement.
    #[arg(long, default_value_t = 10)]
    pods: usize,
    /// How long the sleeper pods idle before memory is read.
    #[arg(long, default_value_t = 2000)]
    settle_ms: u64,
    /// Timed RunPodSandbox calls per network backend (0: skip that part).
    #[arg(long, default_value_t = 50)]
    network_runs: usize,
    /// Pull + first start runs of the big module per precompile mode (0: skip that part).
    #[arg(long, default_value_t = 5)]
    precompile_runs: usize,
    /// Functions of the big module (about 350 bytes of code each).
    #[arg(long, default_value_t = 15_000)]
    precompile_functions: usize,
}

#[path = "../bench/network.rs"]
mod network;
#[path = "../bench/precompile.rs"]
mod precompile;

/// How often ContainerStatus is polled while waiting for the hello container to exit.
const POLL: Duration = Duration::from_millis(2);
/// Give up on a container that has not exited after this long.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

fn main() -> Result<()> {
    let cli = Cli::parse();
    if !conformance::is_root() {
        bail!("wcri-bench must run as root: every pod gets its own network namespace");
    }
    if cli.runs == 0 || cli.pods == 0 {
        bail!("--runs and --pods must be at least 1");
    }
    let bin = conformance::daemon::wasm_cri_bin();
    eprintln!("wcri-bench: daemon binary {}", bin.display());
    eprintln!("wcri-bench: building fixtures and starting the registry");
    let reg = Registry::start_with_fixtures().context("start registry with fixtures")?;
    // Debug logging (the harness default) would be part of what we time: use the production level unless
    // the caller asks for another one.
    let log = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_string());
    let daemon = Daemon::start(DaemonOpts::with_registry(reg.addr()).env("RUST_LOG", &log))
        .context("start wasm-cri")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("build tokio runtime")?;
    let result = rt.block_on(bench(&cli, &reg, &daemon));
    if result.is_err() {
        eprintln!(
            "--- wasm-cri log ({}) ---\n{}\n---",
            daemon.log_path().display(),
            daemon.log_tail(40)
        );
    }
    // Daemon's drop removes whatever pods an error left behind.
    result
}

struct Cri {
    runtime: RuntimeServiceClient<Channel>,
    image: ImageServiceClient<Channel>,
}

async fn connect(socket: PathBuf) -> Result<Cri> {
    let channel = Endpoint::from_static("http://cri.invalid")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                tokio::net::UnixStream::connect(socket)
                    .await
                    .map(TokioIo::new)
            }
        }))
        .await
        .context("connect to the CRI socket")?;
    Ok(Cri {
        runtime: RuntimeServiceClient::new(channel.clone()),
        image: ImageServiceClient::new(channel),
    })
}

async fn bench(cli: &Cli, reg: &Registry, daemon: &Daemon) -> Result<()> {
    let mut cri = connect(daemon.socket()).await?;
    let hello = reg.image_ref("wasm/hello:latest");
    let sleeper = reg.image_ref("wasm/sleeper:latest");
    for image in [&hello, &sleeper] {
        cri.image
            .pull_image(PullImageRequest {
                image: Some(ImageSpec {
                    image: image.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .with_context(|| format!("pull {image}"))?;
    }
    let pods = Pods {
        logs: daemon.dir().join("logs"),
        next: std::cell::Cell::new(0),
    };

    // 1. Pod start latency.
    let mut cold = Vec::new();
    for _ in 0..cli.warmup {
        cold.push(start_hello(&mut cri, &pods, &hello).await?.total);
    }
    let mut runs = Vec::with_capacity(cli.runs);
    for i in 0..cli.runs {
        let t = start_hello(&mut cri, &pods, &hello)
            .await
            .with_context(|| format!("run {i}"))?;
        runs.push(t);
    }
    let total = Stats::of(runs.iter().map(|t| t.total));
    let run_pod = Stats::of(runs.iter().map(|t| t.run_pod));
    let create = Stats::of(runs.iter().map(|t| t.create));
    let start_to_exit = Stats::of(runs.iter().map(|t| t.start_to_exit));
    println!(
        "pod start (RunPodSandbox -> hello exited), {} runs: median {:.1} ms (min {:.1}, p90 {:.1}, max {:.1})",
        cli.runs, total.median, total.min, total.p90, total.max
    );
    println!(
        "  breakdown medians: RunPodSandbox {:.1} ms, CreateContainer {:.1} ms, StartContainer -> exited {:.1} ms",
        run_pod.median, create.median, start_to_exit.median
    );
    if let Some(first) = cold.first() {
        println!(
            "  first (untimed warm-up) run: {:.1} ms",
            first.as_secs_f64() * 1e3
        );
    }

    // 2. Memory of idle pods.
    let mut sandbox_ids = Vec::with_capacity(cli.pods);
    let mem = async {
        for _ in 0..cli.pods {
            let (pod_id, config) = pods.run(&mut cri).await?;
            sandbox_ids.push(pod_id.clone());
            let ctr = create_container(&mut cri, &pod_id, &config, "sleeper", &sleeper).await?;
            start_container(&mut cri, &ctr).await?;
        }
        tokio::time::sleep(Duration::from_millis(cli.settle_ms)).await;
        let daemon_pid = daemon.pid().context("wasm-cri is not running")?;
        let daemon_mem = MemUsage::of(daemon_pid)?;
        let mut per_pod = Vec::with_capacity(sandbox_ids.len());
        for id in &sandbox_ids {
            let pid = pod_pid(&mut cri, id).await?;
            per_pod.push(MemUsage::of(pid).with_context(|| format!("pod {id}"))?);
        }
        anyhow::Ok((daemon_mem, per_pod))
    }
    .await;
    for id in &sandbox_ids {
        remove_pod(&mut cri, id).await?;
    }
    let (daemon_mem, per_pod) = mem?;
    let pss_pods: u64 = per_pod.iter().map(|m| m.pss_kib).sum();
    let rss_pods: u64 = per_pod.iter().map(|m| m.rss_kib).sum();
    let pss_pod_median = median_kib(per_pod.iter().map(|m| m.pss_kib));
    let rss_pod_median = median_kib(per_pod.iter().map(|m| m.rss_kib));
    let pss_total = daemon_mem.pss_kib + pss_pods;
    let rss_total = daemon_mem.rss_kib + rss_pods;
    println!(
        "PSS with {} idle sleeper pods: total {:.1} MiB (daemon {:.1} MiB, per pod median {} KiB)",
        cli.pods,
        mib(pss_total),
        mib(daemon_mem.pss_kib),
        pss_pod_median
    );
    println!(
        "RSS with {} idle sleeper pods: total {:.1} MiB (daemon {:.1} MiB, per pod median {} KiB)",
        cli.pods,
        mib(rss_total),
        mib(daemon_mem.rss_kib),
        rss_pod_median
    );

    let network = if cli.network_runs > 0 {
        let log = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_string());
        network::bench(cli.network_runs, &log).await?
    } else {
        serde_json::Value::Null
    };

    let precompiled = if cli.precompile_runs > 0 {
        let log = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_string());
        precompile::bench(reg, cli.precompile_runs, cli.precompile_functions, &log).await?
    } else {
        serde_json::Value::Null
    };

    let summary = json!({
        "pod_start_ms": {
            "runs": cli.runs,
            "median": round2(total.median),
            "min": round2(total.min),
            "p90": round2(total.p90),
            "max": round2(total.max),
            "median_run_pod_sandbox": round2(run_pod.median),
            "median_create_container": round2(create.median),
            "median_start_to_exited": round2(start_to_exit.median),
            "warmup_runs": cold.iter().map(|d| round2(d.as_secs_f64() * 1e3)).collect::<Vec<_>>(),
        },
        "memory_kib": {
            "pods": cli.pods,
            "settle_ms": cli.settle_ms,
            "pss_total": pss_total,
            "pss_daemon": daemon_mem.pss_kib,
            "pss_per_pod_median": pss_pod_median,
            "rss_total": rss_total,
            "rss_daemon": daemon_mem.rss_kib,
            "rss_per_pod_median": rss_pod_median,
        },
        "run_pod_sandbox_by_network_ms": network,
        "precompile_cache_ms": precompiled,
    });
    println!("{summary}");
    Ok(())
}

/// Timings of one pod start.
struct StartTimes {
    run_pod: Duration,
    create: Duration,
    start_to_exit: Duration,
    total: Duration,
}

/// Runs one hello pod, times it, then stops and removes the pod (untimed).
async fn start_hello(cri: &mut Cri, pods: &Pods, image: &str) -> Result<StartTimes> {
    let config = pods.next_config()?;
    let t0 = Instant::now();
    let pod_id = run_pod(cri, &config).await?;
    let t1 = Instant::now();
    let timed = async {
        let ctr = create_container(cri, &pod_id, &config, "hello", image).await?;
        let t2 = Instant::now();
        start_container(cri, &ctr).await?;
        wait_exited(cri, &ctr).await?;
        let t3 = Instant::now();
        anyhow::Ok(StartTimes {
            run_pod: t1 - t0,
            create: t2 - t1,
            start_to_exit: t3 - t2,
            total: t3 - t0,
        })
    }
    .await;
    remove_pod(cri, &pod_id).await?;
    timed
}

/// Hands out pod configs with unique uids and their log directories.
struct Pods {
    logs: PathBuf,
    next: std::cell::Cell<u64>,
}

impl Pods {
    fn next_config(&self) -> Result<PodSandboxConfig> {
        let n = self.next.get();
        self.next.set(n + 1);
        let uid = format!("bench-{}-{n}", std::process::id());
        // The kubelet creates the pod log directory before RunPodSandbox; so do we, outside the timing.
        let logs = self.logs.join(&uid);
        std::fs::create_dir_all(&logs).with_context(|| format!("create {}", logs.display()))?;
        Ok(PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: format!("bench-{n}"),
                namespace: "default".to_string(),
                uid,
                attempt: 0,
            }),
            log_directory: path_string(&logs)?,
            ..Default::default()
        })
    }

    async fn run(&self, cri: &mut Cri) -> Result<(String, PodSandboxConfig)> {
        let config = self.next_config()?;
        let id = run_pod(cri, &config).await?;
        Ok((id, config))
    }
}

fn path_string(p: &Path) -> Result<String> {
    p.to_str()
        .map(str::to_string)
        .with_context(|| format!("{} is not UTF-8", p.display()))
}

async fn run_pod(cri: &mut Cri, config: &PodSandboxConfig) -> Result<String> {
    let resp = cri
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config.clone()),
            ..Default::default()
        })
        .await
        .context("RunPodSandbox")?;
    Ok(resp.into_inner().pod_sandbox_id)
}

async fn create_container(
    cri: &mut Cri,
    pod_id: &str,
    pod: &PodSandboxConfig,
    name: &str,
    image: &str,
) -> Result<String> {
    let resp = cri
        .runtime
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod_id.to_string(),
            config: Some(ContainerConfig {
                metadata: Some(ContainerMetadata {
                    name: name.to_string(),
                    attempt: 0,
                }),
                image: Some(ImageSpec {
                    image: image.to_string(),
                    ..Default::default()
                }),
                log_path: format!("{name}.log"),
                ..Default::default()
            }),
            sandbox_config: Some(pod.clone()),
        })
        .await
        .with_context(|| format!("CreateContainer {name}"))?;
    Ok(resp.into_inner().container_id)
}

async fn start_container(cri: &mut Cri, id: &str) -> Result<()> {
    cri.runtime
        .start_container(StartContainerRequest {
            container_id: id.to_string(),
        })
        .await
        .with_context(|| format!("StartContainer {id}"))?;
    Ok(())
}

/// Polls ContainerStatus every [`POLL`] until the container is EXITED; fails if it exited non-zero.
async fn wait_exited(cri: &mut Cri, id: &str) -> Result<()> {
    let deadline = Instant::now() + EXIT_TIMEOUT;
    loop {
        let status = cri
            .runtime
            .container_status(ContainerStatusRequest {
                container_id: id.to_string(),
                verbose: false,
            })
            .await
            .with_context(|| format!("ContainerStatus {id}"))?
            .into_inner()
            .status
            .with_context(|| format!("ContainerStatus {id}: no status"))?;
        if status.state == ContainerState::ContainerExited as i32 {
            if status.exit_code != 0 {
                bail!(
                    "container {id} exited with {} ({}: {})",
                    status.exit_code,
                    status.reason,
                    status.message
                );
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("container {id} has not exited after {EXIT_TIMEOUT:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn remove_pod(cri: &mut Cri, id: &str) -> Result<()> {
    cri.runtime
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        })
        .await
        .with_context(|| format!("StopPodSandbox {id}"))?;
    cri.runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        })
        .await
        .with_context(|| format!("RemovePodSandbox {id}"))?;
    Ok(())
}

/// The pod process pid from verbose PodSandboxStatus (`info["info"]` is a JSON object with `pid`).
async fn pod_pid(cri: &mut Cri, id: &str) -> Result<u32> {
    let resp = cri
        .runtime
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: id.to_string(),
            verbose: true,
        })
        .await
        .with_context(|| format!("PodSandboxStatus {id}"))?
        .into_inner();
    let info = resp
        .info
        .get("info")
        .with_context(|| format!("PodSandboxStatus {id}: no verbose info"))?;
    let info: serde_json::Value =
        serde_json::from_str(info).with_context(|| format!("PodSandboxStatus {id}: info"))?;
    let pid = info["pid"]
        .as_u64()
        .with_context(|| format!("PodSandboxStatus {id}: no pid in {info}"))?;
    u32::try_from(pid).with_context(|| format!("pod {id}: pid {pid} out of range"))
}

/// `Pss:` and `Rss:` of one process, in KiB.
struct MemUsage {
    pss_kib: u64,
    rss_kib: u64,
}

impl MemUsage {
    fn of(pid: u32) -> Result<MemUsage> {
        let path = format!("/proc/{pid}/smaps_rollup");
        let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
        let field = |name: &str| -> Result<u64> {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.trim().strip_suffix("kB"))
                .and_then(|kb| kb.trim().parse().ok())
                .with_context(|| format!("{path}: no {name} line"))
        };
        Ok(MemUsage {
            pss_kib: field("Pss:")?,
            rss_kib: field("Rss:")?,
        })
    }
}

/// Order statistics in milliseconds.
struct Stats {
    min: f64,
    median: f64,
    p90: f64,
    max: f64,
}

impl Stats {
    /// `samples` must not be empty (the caller checks `--runs >= 1`); an empty input gives zeros.
    fn of(samples: impl Iterator<Item = Duration>) -> Stats {
        let mut ms: Vec<f64> = samples.map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let at = |i: usize| ms.get(i).copied().unwrap_or(0.0);
        let n = ms.len();
        let median = if n.is_multiple_of(2) && n > 0 {
            (at(n / 2 - 1) + at(n / 2)) / 2.0
        } else {
            at(n / 2)
        };
        // Nearest-rank percentile: the smallest sample with at least 90 % of the samples at or below it.
        let p90 = at((n * 9).div_ceil(10).saturating_sub(1));
        Stats {
            min: at(0),
            median,
            p90,
            max: at(n.saturating_sub(1)),
        }
    }
}

/// Median of KiB counts (the mean of the middle two for an even count, rounded down).
fn median_kib(values: impl Iterator<Item = u64>) -> u64 {
    let mut v: Vec<u64> = values.collect();
    v.sort_unstable();
    let n = v.len();
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    if n.is_multiple_of(2) && n > 0 {
        (at(n / 2 - 1) + at(n / 2)) / 2
    } else {
        at(n / 2)
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
