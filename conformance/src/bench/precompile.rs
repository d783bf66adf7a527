//! `wcri-bench` part 4: pull and first start of a multi-megabyte module with and without the precompile cache.
//!
//! The module is `conformance::big_module` (`--precompile-functions` functions, about 350 bytes of code each),
//! pushed once as `wasm/big:1`. Each mode gets a daemon of its own (`--precompile true` / `false`). Each run
//! times PullImage, then a first pod (RunPodSandbox → CreateContainer → StartContainer → exited, output
//! checked by the module itself: it exits 1 when its result is wrong) and a second pod on the same node,
//! then removes the image (untimed), so the next run pulls and compiles from scratch.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use conformance::{Daemon, DaemonOpts, ImageSpec, Registry};
use proto::cri::{ImageSpec as CriImageSpec, PullImageRequest, RemoveImageRequest};
use serde_json::{Value, json};

use super::{Cri, Pods, Stats, connect, round2, start_hello};

struct Run {
    pull: Duration,
    first: Duration,
    first_create: Duration,
    second: Duration,
    second_create: Duration,
}

pub async fn bench(reg: &Registry, runs: usize, functions: usize, log: &str) -> Result<Value> {
    let dir = tempfile::tempdir().context("temp dir")?;
    let wasm = conformance::big_module::generate(functions)?;
    let local = dir.path().join("big.wasm");
    std::fs::write(&local, &wasm).context("write the big module")?;
    let spec = ImageSpec::single(&local, "/big.wasm");
    let reg_addr = reg.addr().to_owned();
    reg.push("wasm/big:1", &spec).context("push wasm/big:1")?;
    let image = format!("{reg_addr}/wasm/big:1");
    println!(
        "precompile cache: module of {functions} functions, {:.2} MB",
        wasm.len() as f64 / 1e6
    );
    let mut out = serde_json::Map::new();
    out.insert("wasm_bytes".into(), json!(wasm.len()));
    for (name, enabled) in [("with_cache", "true"), ("without_cache", "false")] {
        let daemon = Daemon::start(
            DaemonOpts::with_registry(&reg_addr)
                .env("RUST_LOG", log)
                .arg("--precompile")
                .arg(enabled),
        )
        .with_context(|| format!("start wasm-cri --precompile {enabled}"))?;
        let mut cri = connect(daemon.socket()).await?;
        let pods = Pods {
            logs: daemon.dir().join("logs"),
            next: std::cell::Cell::new(0),
        };
        let mut results = Vec::with_capacity(runs);
        for i in 0..runs {
            let run = one_run(&mut cri, &pods, &image)
                .await
                .with_context(|| format!("{name} run {i}"))?;
            results.push(run);
        }
        let pull = Stats::of(results.iter().map(|r| r.pull));
        let first = Stats::of(results.iter().map(|r| r.first));
        let first_create = Stats::of(results.iter().map(|r| r.first_create));
        let second = Stats::of(results.iter().map(|r| r.second));
        let second_create = Stats::of(results.iter().map(|r| r.second_create));
        let pull_and_first = Stats::of(results.iter().map(|r| r.pull + r.first));
        println!(
            "  {name}, {runs} runs, medians: PullImage {:.1} ms, first pod start {:.1} ms (CreateContainer {:.1} ms), \
             pull + first start {:.1} ms, second pod start {:.1} ms (CreateContainer {:.1} ms)",
            pull.median,
            first.median,
            first_create.median,
            pull_and_first.median,
            second.median,
            second_create.median
        );
        out.insert(
            name.into(),
            json!({
                "runs": runs,
                "median_pull": round2(pull.median),
                "median_first_start": round2(first.median),
                "median_first_create_container": round2(first_create.median),
                "median_pull_and_first_start": round2(pull_and_first.median),
                "median_second_start": round2(second.median),
                "median_second_create_container": round2(second_create.median),
            }),
        );
    }
    Ok(Value::Object(out))
}

async fn one_run(cri: &mut Cri, pods: &Pods, image: &str) -> Result<Run> {
    let t0 = Instant::now();
    cri.image
        .pull_image(PullImageRequest {
            image: Some(CriImageSpec {
                image: image.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .with_context(|| format!("pull {image}"))?;
    let pull = t0.elapsed();
    let first = start_hello(cri, pods, image).await.context("first pod")?;
    let second = start_hello(cri, pods, image).await.context("second pod")?;
    cri.image
        .remove_image(RemoveImageRequest {
            image: Some(CriImageSpec {
                image: image.to_owned(),
                ..Default::default()
            }),
        })
        .await
        .with_context(|| format!("remove {image}"))?;
    Ok(Run {
        pull,
        first: first.total,
        first_create: first.create,
        second: second.total,
        second_create: second.create,
    })
}
