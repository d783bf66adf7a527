//! `wasm-cri image import|export`: load images onto a node without registry access, and write
//! stored images out, as OCI image layouts (a directory or a tar of one).
//!
//! The CLI works on the store directly (`<root>/images`, root from `--root`, the config file or
//! the default), not through the daemon:
//! - `import` writes to the store, so it takes the store's lock (`store.lock`) like the daemon
//!   does. While the daemon runs, it fails at once with a message saying to stop it first;
//!   pods keep running while the daemon is stopped, and the daemon lists the imported images
//!   when it starts again.
//! - `export` only reads records and immutable blobs, so it runs whether or not the daemon does.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use cri_server::config::{Cli, Config};
use imageservice::{ImageError, ImageStore, StoreOptions};

/// `wasm-cri image ...`.
#[derive(Debug, Parser)]
#[command(
    name = "wasm-cri image",
    bin_name = "wasm-cri image",
    about = "Import and export images as OCI image layouts (air-gapped nodes)",
    after_help = "Both work on the image store under the daemon's root (<root>/images). `import` needs the \
daemon stopped (it owns the store while it runs; pods keep running meanwhile); `export` works either way."
)]
struct ImageCli {
    /// TOML config file whose `root` locates the store (default: /etc/wasm-cri/config.toml when present).
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// The daemon's persistent state directory; the store is <root>/images (default /var/lib/wasm-cri).
    #[arg(long, value_name = "DIR", global = true)]
    root: Option<PathBuf>,
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(Debug, Subcommand)]
enum ImageCommand {
    /// Import every image of an OCI image layout (a directory, or an uncompressed tar of one),
    /// verifying each blob's digest, as a pull would. Images are named by the layout's
    /// `io.containerd.image.name` or full `org.opencontainers.image.ref.name` annotations, or by --name.
    Import {
        /// The layout: a directory holding `oci-layout`, `index.json` and `blobs/`, or a .tar of one.
        source: PathBuf,
        /// Name the layout's single image REF instead (normalised like a pull: `app` is
        /// docker.io/library/app:latest). Repeatable.
        #[arg(long = "name", value_name = "REF")]
        names: Vec<String>,
    },
    /// Export one image (by id, repo tag or repo digest) as an OCI image layout: a tar when OUT ends
    /// in `.tar`, else a directory (which must not exist or be empty).
    Export {
        /// Image id, repo tag or repo digest, as `crictl images` shows them.
        image: String,
        /// `<file>.tar` or a directory.
        out: PathBuf,
    },
}

/// Runs `wasm-cri image ...`; `args` starts with the program name.
pub fn main(args: Vec<std::ffi::OsString>) -> anyhow::Result<ExitCode> {
    // Drop the `image` word so clap sees `wasm-cri image` as the program.
    let mut args = args;
    if args.len() > 1 {
        args.remove(1);
    }
    let cli = ImageCli::parse_from(args);
    let store_root = store_root(&cli)?;
    match cli.command {
        ImageCommand::Import { source, names } => import(&store_root, &source, &names),
        ImageCommand::Export { image, out } => {
            let exported = imageservice::export_image(&store_root, &image, &out)
                .with_context(|| format!("exporting {image} to {}", out.display()))?;
            println!(
                "exported {} ({} blobs, {} bytes) as {} to {}",
                exported.image_id,
                exported.blobs,
                exported.bytes,
                if exported.names.is_empty() {
                    "an unnamed entry".to_owned()
                } else {
                    exported.names.join(", ")
                },
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `<root>/images`, the root resolved as the daemon resolves it (flag, config file, default).
fn store_root(cli: &ImageCli) -> anyhow::Result<PathBuf> {
    let mut daemon_args = vec!["wasm-cri".into()];
    if let Some(config) = &cli.config {
        daemon_args.extend(["--config".into(), config.clone().into_os_string()]);
    }
    if let Some(root) = &cli.root {
        daemon_args.extend(["--root".into(), root.clone().into_os_string()]);
    }
    let daemon_cli: Cli = Cli::try_parse_from::<_, std::ffi::OsString>(daemon_args)
        .context("reading --config and --root")?;
    let config = Config::load(&daemon_cli).context("loading configuration")?;
    Ok(config.root.join("images"))
}

fn import(
    store_root: &std::path::Path,
    source: &std::path::Path,
    names: &[String],
) -> anyhow::Result<ExitCode> {
    if !source.exists() {
        bail!(
            "{} does not exist: name an OCI layout directory or a .tar of one",
            source.display()
        );
    }
    std::fs::create_dir_all(store_root)
        .with_context(|| format!("creating {}", store_root.display()))?;
    // No registry is contacted: the layout is the only source.
    let store = match ImageStore::open(store_root, StoreOptions::default()) {
        Ok(store) => store,
        Err(ImageError::StoreLocked { path, .. }) => bail!(
            "the image store {} is in use by the running wasm-cri daemon ({} is locked); stop the daemon \
             (systemctl stop wasm-cri: pods keep running), run the import again, then start it",
            store_root.display(),
            path.display()
        ),
        Err(e) => {
            return Err(e).context(format!("opening the image store {}", store_root.display()));
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let images = runtime
        .block_on(store.import(source, names))
        .with_context(|| format!("importing {}", source.display()))?;
    for image in images {
        println!(
            "imported {} as {}",
            image.id,
            if image.repo_tags.is_empty() {
                image.repo_digests.join(", ")
            } else {
                image.repo_tags.join(", ")
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}
