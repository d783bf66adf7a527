//! `wcri-fixture`: builds the Wasm fixtures and pushes test images to a plain-HTTP registry.
//!
//! ```text
//! wcri-fixture build --out DIR
//! wcri-fixture push --registry 127.0.0.1:5000 --image wasm/hello:latest --file hello.wasm=/app/hello.wasm \
//!     [--entrypoint /app/hello.wasm] [--cmd ARG]... [--env K=V]... [--workdir /app] [--os linux --architecture amd64]
//! wcri-fixture build-and-push --registry 127.0.0.1:5000 [--out DIR]
//! wcri-fixture critest-images --registry 127.0.0.1:5000 [--out DIR]
//! ```

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use conformance::image::{self, ImageSpec, LayerFile};
use conformance::{critest_images, fixtures};

#[derive(Parser)]
#[command(about = "build wasm-cri test fixtures and push test images")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build every fixture into DIR (hello, exitcode, sleeper, probe, memhog, trap, loop, toolbox,
    /// hello-component, hello-http, tcp-hello).
    Build {
        #[arg(long)]
        out: PathBuf,
    },
    /// Build a one-layer image from local files and push it; prints the manifest digest.
    Push {
        /// Registry host:port, spoken to over plain HTTP.
        #[arg(long)]
        registry: String,
        /// Repository and tag, e.g. wasm/hello:latest.
        #[arg(long)]
        image: String,
        /// LOCAL=IMAGE_PATH, repeatable.
        #[arg(long = "file", required = true)]
        files: Vec<String>,
        /// Entrypoint (one element); defaults to the image path of the first --file.
        #[arg(long)]
        entrypoint: Option<String>,
        /// Cmd element, repeatable.
        #[arg(long = "cmd", allow_hyphen_values = true)]
        cmd: Vec<String>,
        /// K=V, repeatable.
        #[arg(long = "env")]
        env: Vec<String>,
        #[arg(long)]
        workdir: Option<String>,
        /// Config `os`; default wasip2 for a component entrypoint, else wasip1.
        #[arg(long)]
        os: Option<String>,
        /// Config `architecture`; default wasm.
        #[arg(long)]
        architecture: Option<String>,
    },
    /// Build every fixture and push each as wasm/<name>:latest, plus linux/true:latest (an ELF).
    BuildAndPush {
        #[arg(long)]
        registry: String,
        /// Where to keep the built fixtures; a temp dir if unset.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Build the toolbox and push the Wasm stand-ins for the images critest pulls, under the repository
    /// paths critest uses (e2e-test-images/busybox:1.29-2, k8s-staging-cri-tools/test-image-*, pause:3.9,
    /// ...); prints `REGISTRY/NAME DIGEST` per image. Serve them with a registry mirror for
    /// registry.k8s.io, k8s.gcr.io, gcr.io and public.ecr.aws.
    CritestImages {
        #[arg(long)]
        registry: String,
        /// Where to keep the built fixtures; a temp dir if unset.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn main() -> Result<()> {
    image::ensure_crypto_provider();
    let cli = Cli::parse();
    match cli.command {
        Cmd::Build { out } => {
            for path in fixtures::build_all(&out)? {
                println!("{}", path.display());
            }
        }
        Cmd::Push {
            registry,
            image,
            files,
            entrypoint,
            cmd,
            env,
            workdir,
            os,
            architecture,
        } => {
            let files = files
                .iter()
                .map(|f| LayerFile::parse(f))
                .collect::<Result<Vec<_>>>()?;
            let entrypoint = match entrypoint {
                Some(e) => e,
                None => match files.first() {
                    Some(f) => f.image_path.clone(),
                    None => bail!("no --file given"),
                },
            };
            if let Some(bad) = env.iter().find(|e| !e.contains('=')) {
                bail!("--env {bad:?} is not K=V");
            }
            let spec = ImageSpec {
                files,
                entrypoint: vec![entrypoint],
                cmd,
                env,
                workdir,
                os,
                architecture,
                ..ImageSpec::default()
            };
            let digest = runtime()?.block_on(image::push_image(&registry, &image, &spec))?;
            println!("{digest}");
        }
        Cmd::BuildAndPush { registry, out } => {
            let (out, _tmp) = out_dir(out)?;
            for (image, digest) in
                runtime()?.block_on(image::build_and_push_all(&registry, &out))?
            {
                println!("{registry}/{image} {digest}");
            }
        }
        Cmd::CritestImages { registry, out } => {
            let (out, _tmp) = out_dir(out)?;
            let toolbox = fixtures::build_all(&out)?
                .into_iter()
                .find(|p| p.file_stem().is_some_and(|s| s == "toolbox"))
                .context("the fixtures include no toolbox")?;
            for (image, digest) in
                runtime()?.block_on(critest_images::push_critest_images(&registry, &toolbox))?
            {
                println!("{registry}/{image} {digest}");
            }
        }
    }
    Ok(())
}

/// `out`, or a temp dir (returned too, so it lives until the caller is done).
fn out_dir(out: Option<PathBuf>) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    match out {
        Some(out) => Ok((out, None)),
        None => {
            let tmp = tempfile::Builder::new()
                .prefix("wcri-fixtures")
                .tempdir()
                .context("create temp dir")?;
            Ok((tmp.path().to_path_buf(), Some(tmp)))
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("build tokio runtime")
}
