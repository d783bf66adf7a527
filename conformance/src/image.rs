//! Test images: builds a one-layer OCI image (tar+gzip layer, OCI config, OCI manifest) from local files,
//! inline files, directories and symlinks, and pushes it over plain HTTP with `oci-client`; pulls images
//! back for checks.
//!
//! Layers are deterministic (sorted entries, mtime 0, uid/gid 0, gzip mtime 0), so pushing the same
//! files twice yields the same digests.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{
    IMAGE_CONFIG_MEDIA_TYPE, IMAGE_LAYER_GZIP_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE, OciImageManifest,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest, Sha256};

use crate::fixtures;

/// One file placed in the image layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerFile {
    /// File on the local disk.
    pub local: PathBuf,
    /// Absolute path inside the image, e.g. `/app/hello.wasm`.
    pub image_path: String,
}

impl LayerFile {
    pub fn new(local: impl Into<PathBuf>, image_path: impl Into<String>) -> Self {
        Self {
            local: local.into(),
            image_path: image_path.into(),
        }
    }

    /// Parses the CLI form `LOCAL=IMAGE_PATH`.
    pub fn parse(spec: &str) -> Result<Self> {
        let Some((local, image_path)) = spec.split_once('=') else {
            bail!("file spec {spec:?} is not LOCAL=IMAGE_PATH");
        };
        if !image_path.starts_with('/') {
            bail!("image path {image_path:?} must be absolute");
        }
        Ok(Self::new(local, image_path))
    }
}

/// A layer entry that is not a copy of a local file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerEntry {
    /// A directory. Parents of every entry are added with mode 0755 anyway; this is for empty directories
    /// and other modes (e.g. `/tmp` with 0o1777).
    Dir { image_path: String, mode: u32 },
    /// A regular file with these contents.
    Data {
        image_path: String,
        data: Vec<u8>,
        mode: u32,
    },
    /// A symbolic link. Prefer relative targets: a WASI guest cannot follow an absolute link whose target
    /// lies outside its pre-opened directory.
    Symlink { image_path: String, target: String },
    /// A hard link to `target`, the absolute image path of a regular file (a local file or inline data) of the
    /// same layer, as real busybox images link their applets (tar entry type `Link`).
    Hardlink { image_path: String, target: String },
}

impl LayerEntry {
    pub fn dir(image_path: impl Into<String>, mode: u32) -> Self {
        Self::Dir {
            image_path: image_path.into(),
            mode,
        }
    }

    /// A regular file with mode 0644.
    pub fn data(image_path: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        Self::Data {
            image_path: image_path.into(),
            data: data.into(),
            mode: 0o644,
        }
    }

    pub fn symlink(image_path: impl Into<String>, target: impl Into<String>) -> Self {
        Self::Symlink {
            image_path: image_path.into(),
            target: target.into(),
        }
    }

    pub fn hardlink(image_path: impl Into<String>, target: impl Into<String>) -> Self {
        Self::Hardlink {
            image_path: image_path.into(),
            target: target.into(),
        }
    }

    /// Absolute path inside the image.
    pub fn image_path(&self) -> &str {
        match self {
            Self::Dir { image_path, .. }
            | Self::Data { image_path, .. }
            | Self::Symlink { image_path, .. }
            | Self::Hardlink { image_path, .. } => image_path,
        }
    }
}

/// What to put into a test image.
#[derive(Debug, Clone, Default)]
pub struct ImageSpec {
    pub files: Vec<LayerFile>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `K=V` strings.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    /// `os` of the config; `None` picks `wasip2` when the entrypoint file is a component, else `wasip1`.
    pub os: Option<String>,
    /// `architecture` of the config; `None` means `wasm`.
    pub architecture: Option<String>,
    /// Directories, inline files and symlinks added to the layer next to `files`.
    pub entries: Vec<LayerEntry>,
    /// Config `User`, e.g. `1002`, `www-data:1004`.
    pub user: Option<String>,
    /// Config `ExposedPorts` keys, e.g. `80/tcp`.
    pub exposed_ports: Vec<String>,
    /// Config `Labels`.
    pub labels: BTreeMap<String, String>,
}

impl ImageSpec {
    /// An image holding one file that is also the entrypoint.
    pub fn single(local: impl Into<PathBuf>, image_path: &str) -> Self {
        Self {
            files: vec![LayerFile::new(local, image_path)],
            entrypoint: vec![image_path.to_string()],
            ..Self::default()
        }
    }

    fn resolved_os(&self) -> Result<String> {
        if let Some(os) = &self.os {
            return Ok(os.clone());
        }
        let inline = self.entrypoint.first().and_then(|e| {
            self.entries.iter().find_map(|entry| match entry {
                LayerEntry::Data {
                    image_path, data, ..
                } if image_path == e => Some(data),
                _ => None,
            })
        });
        if let Some(data) = inline {
            let component = fixtures::is_component(data);
            return Ok(if component { "wasip2" } else { "wasip1" }.to_string());
        }
        let entry = self
            .entrypoint
            .first()
            .and_then(|e| self.files.iter().find(|f| &f.image_path == e));
        let component = match entry {
            Some(file) => {
                let mut head = [0u8; 8];
                let mut f = std::fs::File::open(&file.local)
                    .with_context(|| format!("open {}", file.local.display()))?;
                let n = f
                    .read(&mut head)
                    .with_context(|| format!("read {}", file.local.display()))?;
                fixtures::is_component(&head[..n])
            }
            None => false,
        };
        Ok(if component { "wasip2" } else { "wasip1" }.to_string())
    }
}

/// A built image, ready to push.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// gzip-compressed layer tar.
    pub layer: Vec<u8>,
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
    /// Serialized OCI image config.
    pub config: Vec<u8>,
}

/// Builds the layer tar from the files: parent dirs first (mode 0755), files with mode 0755.
pub fn build_layer_tar(files: &[LayerFile]) -> Result<Vec<u8>> {
    build_layer_tar_with(files, &[])
}

/// The path of an entry relative to the layer root; refuses the root itself.
fn layer_rel(image_path: &str) -> Result<&str> {
    let rel = image_path.trim_start_matches('/');
    if rel.is_empty() {
        bail!("image path {image_path:?} names the root");
    }
    Ok(rel)
}

fn tar_header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

/// Builds the layer tar from local files and extra entries: directories first (parents of every entry
/// with mode 0755 unless given), then files, inline files and symlinks sorted by path. With no extra
/// entries the tar is byte for byte what [`build_layer_tar`] always produced.
pub fn build_layer_tar_with(files: &[LayerFile], entries: &[LayerEntry]) -> Result<Vec<u8>> {
    let mut dirs: BTreeMap<PathBuf, u32> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    let add_parents = |rel: &str, dirs: &mut BTreeMap<PathBuf, u32>| {
        let mut parent = Path::new(rel).parent();
        while let Some(p) = parent {
            if !p.as_os_str().is_empty() {
                dirs.entry(p.to_path_buf()).or_insert(0o755);
            }
            parent = p.parent();
        }
    };
    for file in files {
        let rel = layer_rel(&file.image_path)?;
        if !seen.insert(rel.to_string()) {
            bail!("image path {:?} given twice", file.image_path);
        }
        add_parents(rel, &mut dirs);
    }
    for entry in entries {
        let rel = layer_rel(entry.image_path())?;
        add_parents(rel, &mut dirs);
        if let LayerEntry::Dir { mode, .. } = entry {
            dirs.insert(PathBuf::from(rel), *mode);
        } else if !seen.insert(rel.to_string()) {
            bail!("image path {:?} given twice", entry.image_path());
        }
    }
    if let Some(clash) = seen
        .iter()
        .find(|p| dirs.contains_key(Path::new(p.as_str())))
    {
        bail!("image path /{clash} is both a directory and a file");
    }
    // Hard links name a regular file of this layer; tar needs it before the link (written last, below).
    let regular: BTreeSet<&str> = files
        .iter()
        .map(|f| f.image_path.as_str())
        .chain(entries.iter().filter_map(|e| match e {
            LayerEntry::Data { image_path, .. } => Some(image_path.as_str()),
            _ => None,
        }))
        .map(|p| p.trim_start_matches('/'))
        .collect();
    for entry in entries {
        if let LayerEntry::Hardlink { image_path, target } = entry
            && !regular.contains(target.trim_start_matches('/'))
        {
            bail!(
                "hard link {image_path} -> {target}: the target is not a regular file of the layer"
            );
        }
    }
    let mut builder = tar::Builder::new(Vec::new());
    // BTreeMap order (by path components) puts every parent before its children.
    for (dir, mode) in &dirs {
        let mut header = tar_header(tar::EntryType::Directory, *mode, 0);
        builder
            .append_data(&mut header, format!("{}/", dir.display()), std::io::empty())
            .with_context(|| format!("append dir {}", dir.display()))?;
    }
    enum Item<'a> {
        File(&'a LayerFile),
        Entry(&'a LayerEntry),
    }
    let mut items: Vec<(&str, Item<'_>)> = files
        .iter()
        .map(|f| (f.image_path.as_str(), Item::File(f)))
        .chain(
            entries
                .iter()
                .filter(|e| !matches!(e, LayerEntry::Dir { .. } | LayerEntry::Hardlink { .. }))
                .map(|e| (e.image_path(), Item::Entry(e))),
        )
        .collect();
    items.sort_by(|a, b| a.0.cmp(b.0));
    for (image_path, item) in items {
        let rel = image_path.trim_start_matches('/');
        match item {
            Item::File(file) => {
                let data = std::fs::read(&file.local)
                    .with_context(|| format!("read {}", file.local.display()))?;
                let mut header = tar_header(tar::EntryType::Regular, 0o755, data.len() as u64);
                builder
                    .append_data(&mut header, rel, data.as_slice())
                    .with_context(|| format!("append {image_path}"))?;
            }
            Item::Entry(LayerEntry::Data { data, mode, .. }) => {
                let mut header = tar_header(tar::EntryType::Regular, *mode, data.len() as u64);
                builder
                    .append_data(&mut header, rel, data.as_slice())
                    .with_context(|| format!("append {image_path}"))?;
            }
            Item::Entry(LayerEntry::Symlink { target, .. }) => {
                let mut header = tar_header(tar::EntryType::Symlink, 0o777, 0);
                builder
                    .append_link(&mut header, rel, target)
                    .with_context(|| format!("append symlink {image_path} -> {target}"))?;
            }
            Item::Entry(LayerEntry::Dir { .. } | LayerEntry::Hardlink { .. }) => {}
        }
    }
    let mut links: Vec<(&str, &str)> = entries
        .iter()
        .filter_map(|e| match e {
            LayerEntry::Hardlink { image_path, target } => Some((
                image_path.trim_start_matches('/'),
                target.trim_start_matches('/'),
            )),
            _ => None,
        })
        .collect();
    links.sort();
    for (rel, target) in links {
        // Link names are archive paths like entry names (relative), as docker and buildkit write them.
        let mut header = tar_header(tar::EntryType::Link, 0o755, 0);
        builder
            .append_link(&mut header, rel, target)
            .with_context(|| format!("append hard link /{rel} -> /{target}"))?;
    }
    builder.into_inner().context("finish layer tar")
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Builds layer and config for `spec`.
pub fn build_image(spec: &ImageSpec) -> Result<BuiltImage> {
    let tar = build_layer_tar_with(&spec.files, &spec.entries)?;
    let diff_id = sha256_digest(&tar);
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).context("gzip layer")?;
    let layer = gz.finish().context("finish gzip layer")?;

    let mut config = serde_json::Map::new();
    if !spec.entrypoint.is_empty() {
        config.insert("Entrypoint".into(), serde_json::json!(spec.entrypoint));
    }
    if !spec.cmd.is_empty() {
        config.insert("Cmd".into(), serde_json::json!(spec.cmd));
    }
    if !spec.env.is_empty() {
        config.insert("Env".into(), serde_json::json!(spec.env));
    }
    if let Some(workdir) = &spec.workdir {
        config.insert("WorkingDir".into(), serde_json::json!(workdir));
    }
    if let Some(user) = &spec.user {
        config.insert("User".into(), serde_json::json!(user));
    }
    if !spec.exposed_ports.is_empty() {
        let ports: serde_json::Map<String, serde_json::Value> = spec
            .exposed_ports
            .iter()
            .map(|p| (p.clone(), serde_json::json!({})))
            .collect();
        config.insert("ExposedPorts".into(), serde_json::Value::Object(ports));
    }
    if !spec.labels.is_empty() {
        config.insert("Labels".into(), serde_json::json!(spec.labels));
    }
    let image_config = serde_json::json!({
        "architecture": spec.architecture.clone().unwrap_or_else(|| "wasm".to_string()),
        "os": spec.resolved_os()?,
        "config": config,
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
    });
    let config = serde_json::to_vec(&image_config).context("serialize image config")?;
    Ok(BuiltImage {
        layer,
        diff_id,
        config,
    })
}

/// Makes sure a rustls crypto provider is installed (oci-client is built without one).
pub fn ensure_crypto_provider() {
    // Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// An `oci-client` speaking plain HTTP.
pub fn http_client() -> Client {
    ensure_crypto_provider();
    Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..ClientConfig::default()
    })
}

/// Parses `REGISTRY/REPO:TAG`.
pub fn reference(registry: &str, image: &str) -> Result<Reference> {
    let full = format!("{registry}/{image}");
    full.parse()
        .with_context(|| format!("parse image reference {full}"))
}

/// Builds `spec` and pushes it as `registry/image`; returns the manifest digest.
pub async fn push_image(registry: &str, image: &str, spec: &ImageSpec) -> Result<String> {
    let reference = reference(registry, image)?;
    let built = build_image(spec)?;
    let layers = [ImageLayer::new(
        built.layer,
        IMAGE_LAYER_GZIP_MEDIA_TYPE.to_string(),
        None,
    )];
    let config = Config::new(built.config, IMAGE_CONFIG_MEDIA_TYPE.to_string(), None);
    let mut manifest = OciImageManifest::build(&layers, &config, None);
    manifest.media_type = Some(OCI_IMAGE_MEDIA_TYPE.to_string());
    let client = http_client();
    client
        .push(
            &reference,
            &layers,
            config,
            &RegistryAuth::Anonymous,
            Some(manifest),
        )
        .await
        .with_context(|| format!("push {reference}"))?;
    client
        .fetch_manifest_digest(&reference, &RegistryAuth::Anonymous)
        .await
        .with_context(|| format!("fetch manifest digest of {reference}"))
}

/// A pulled image: manifest digest, parsed config and the uncompressed layer tars.
#[derive(Debug, Clone)]
pub struct PulledImage {
    pub digest: String,
    pub config: serde_json::Value,
    pub layers: Vec<Vec<u8>>,
}

impl PulledImage {
    /// Reads `path` (absolute, as in the image) from the layers, last layer wins.
    pub fn file(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let want = path.trim_start_matches('/');
        let mut found = None;
        for layer in &self.layers {
            let mut archive = tar::Archive::new(layer.as_slice());
            for entry in archive.entries().context("read layer tar")? {
                let mut entry = entry.context("read layer entry")?;
                let entry_path = entry
                    .path()
                    .context("layer entry path")?
                    .to_string_lossy()
                    .into_owned();
                if entry_path.trim_start_matches("./").trim_start_matches('/') == want {
                    let mut data = Vec::new();
                    entry
                        .read_to_end(&mut data)
                        .context("read layer entry data")?;
                    found = Some(data);
                }
            }
        }
        Ok(found)
    }
}

/// Pulls `registry/image` over plain HTTP.
pub async fn pull_image(registry: &str, image: &str) -> Result<PulledImage> {
    let reference = reference(registry, image)?;
    let client = http_client();
    let data = client
        .pull(
            &reference,
            &RegistryAuth::Anonymous,
            vec![IMAGE_LAYER_GZIP_MEDIA_TYPE],
        )
        .await
        .with_context(|| format!("pull {reference}"))?;
    let config = serde_json::from_slice(&data.config.data).context("parse image config")?;
    let mut layers = Vec::with_capacity(data.layers.len());
    for layer in data.layers {
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(&layer.data[..])
            .read_to_end(&mut tar)
            .context("gunzip layer")?;
        layers.push(tar);
    }
    Ok(PulledImage {
        digest: data.digest.unwrap_or_default(),
        config,
        layers,
    })
}

/// Builds every fixture into `out` and pushes each as `wasm/<name>:latest` (entrypoint `/<name>.wasm`),
/// plus `linux/true:latest` holding `/bin/true` as an ELF entrypoint. Returns `(image, digest)` pairs.
pub async fn build_and_push_all(registry: &str, out: &Path) -> Result<Vec<(String, String)>> {
    let paths = fixtures::build_all(out)?;
    push_all_fixtures(registry, &paths).await
}

/// Pushes already built fixture files (see [`build_and_push_all`]).
pub async fn push_all_fixtures(registry: &str, paths: &[PathBuf]) -> Result<Vec<(String, String)>> {
    let mut pushed = Vec::new();
    for path in paths {
        let Some(name) = path.file_stem().map(|s| s.to_string_lossy().into_owned()) else {
            bail!("fixture path {} has no file name", path.display());
        };
        let image = format!("wasm/{name}:latest");
        let spec = ImageSpec::single(path, &format!("/{name}.wasm"));
        let digest = push_image(registry, &image, &spec).await?;
        pushed.push((image, digest));
    }
    let image = "linux/true:latest".to_string();
    let spec = ImageSpec {
        os: Some("linux".into()),
        architecture: Some("amd64".into()),
        ..ImageSpec::single("/bin/true", "/true")
    };
    let digest = push_image(registry, &image, &spec).await?;
    pushed.push((image, digest));
    Ok(pushed)
}

/// Runs an async harness function to completion on a fresh thread with its own runtime, so it can be
/// called from plain `#[test]`s and from inside a tokio runtime alike.
pub fn block_on<T, F>(fut: F) -> Result<T>
where
    F: std::future::Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let handle = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("build tokio runtime")?;
        rt.block_on(fut)
    });
    match handle.join() {
        Ok(result) => result,
        Err(_) => bail!("harness thread panicked"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// `(path, type, mode, link target, contents)` of every entry, in tar order.
    fn entries(tar: &[u8]) -> Vec<(String, tar::EntryType, u32, String, Vec<u8>)> {
        let mut archive = tar::Archive::new(tar);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let path = e.path().unwrap().to_string_lossy().into_owned();
                let kind = e.header().entry_type();
                let mode = e.header().mode().unwrap();
                let link = e
                    .link_name()
                    .unwrap()
                    .map(|l| l.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (path, kind, mode, link, data)
            })
            .collect()
    }

    #[test]
    fn layer_holds_dirs_inline_files_and_symlinks_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("tool");
        std::fs::write(&local, b"tool").unwrap();
        let files = [LayerFile::new(&local, "/bin/busybox")];
        let extra = [
            LayerEntry::symlink("/bin/sh", "busybox"),
            LayerEntry::data("/etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
            LayerEntry::dir("/tmp", 0o1777),
            LayerEntry::dir("/bin", 0o700),
        ];
        let tar = build_layer_tar_with(&files, &extra).unwrap();
        let got = entries(&tar);
        let summary: Vec<(&str, tar::EntryType, u32)> = got
            .iter()
            .map(|(p, k, m, _, _)| (p.as_str(), *k, *m))
            .collect();
        assert_eq!(
            summary,
            [
                ("bin/", tar::EntryType::Directory, 0o700),
                ("etc/", tar::EntryType::Directory, 0o755),
                ("tmp/", tar::EntryType::Directory, 0o1777),
                ("bin/busybox", tar::EntryType::Regular, 0o755),
                ("bin/sh", tar::EntryType::Symlink, 0o777),
                ("etc/passwd", tar::EntryType::Regular, 0o644),
            ]
        );
        assert_eq!(got[3].4, b"tool");
        assert_eq!(got[4].3, "busybox");
        assert_eq!(got[5].4, b"root:x:0:0::/root:/bin/sh\n");
        // Deterministic, and files alone give what build_layer_tar always gave.
        assert_eq!(tar, build_layer_tar_with(&files, &extra).unwrap());
        assert_eq!(
            build_layer_tar(&files).unwrap(),
            build_layer_tar_with(&files, &[]).unwrap()
        );
    }

    #[test]
    fn hard_links_follow_every_file_and_name_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("tool");
        std::fs::write(&local, b"tool").unwrap();
        let files = [LayerFile::new(&local, "/bin/busybox")];
        // "[" sorts before "busybox": the link must still come after its target.
        let extra = [
            LayerEntry::hardlink("/bin/[", "/bin/busybox"),
            LayerEntry::hardlink("/bin/sh", "/bin/busybox"),
            LayerEntry::data("/etc/motd", "hi"),
            LayerEntry::hardlink("/etc/issue", "/etc/motd"),
        ];
        let got = entries(&build_layer_tar_with(&files, &extra).unwrap());
        let summary: Vec<(&str, tar::EntryType, &str)> = got
            .iter()
            .map(|(p, k, _, l, _)| (p.as_str(), *k, l.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                ("bin/", tar::EntryType::Directory, ""),
                ("etc/", tar::EntryType::Directory, ""),
                ("bin/busybox", tar::EntryType::Regular, ""),
                ("etc/motd", tar::EntryType::Regular, ""),
                ("bin/[", tar::EntryType::Link, "bin/busybox"),
                ("bin/sh", tar::EntryType::Link, "bin/busybox"),
                ("etc/issue", tar::EntryType::Link, "etc/motd"),
            ]
        );

        let to_link = [
            LayerEntry::symlink("/a", "b"),
            LayerEntry::hardlink("/c", "/a"),
        ];
        assert!(build_layer_tar_with(&[], &to_link).is_err());
        let missing = [LayerEntry::hardlink("/c", "/nowhere")];
        assert!(build_layer_tar_with(&[], &missing).is_err());
        let twice = [
            LayerEntry::data("/a", "1"),
            LayerEntry::hardlink("/a", "/a"),
        ];
        assert!(build_layer_tar_with(&[], &twice).is_err());
    }

    #[test]
    fn layer_refuses_duplicates_and_file_dir_clashes() {
        let twice = [LayerEntry::data("/a", "1"), LayerEntry::symlink("/a", "b")];
        assert!(build_layer_tar_with(&[], &twice).is_err());
        let clash = [LayerEntry::data("/a", "1"), LayerEntry::data("/a/b", "2")];
        assert!(build_layer_tar_with(&[], &clash).is_err());
        assert!(build_layer_tar_with(&[], &[LayerEntry::dir("/", 0o755)]).is_err());
    }

    #[test]
    fn config_carries_user_ports_and_labels() {
        let spec = ImageSpec {
            entries: vec![LayerEntry::data(
                "/app.wasm",
                fixtures::MODULE_PREAMBLE.to_vec(),
            )],
            entrypoint: vec!["/app.wasm".into()],
            user: Some("www-data:1004".into()),
            exposed_ports: vec!["80/tcp".into()],
            labels: BTreeMap::from([("k".to_string(), "v".to_string())]),
            ..ImageSpec::default()
        };
        let built = build_image(&spec).unwrap();
        let config: serde_json::Value = serde_json::from_slice(&built.config).unwrap();
        assert_eq!(config["config"]["User"], "www-data:1004");
        assert_eq!(
            config["config"]["ExposedPorts"],
            serde_json::json!({"80/tcp": {}})
        );
        assert_eq!(config["config"]["Labels"]["k"], "v");
        assert_eq!(config["os"], "wasip1");
    }
}
