//! A throwaway OCI registry: Debian's `docker-registry` serving plain HTTP on a free loopback port with
//! filesystem storage in a temp dir, anonymous or behind HTTP basic auth (htpasswd); killed on drop.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The registry binary: `$WCRI_REGISTRY_BIN`, else Debian's `/usr/bin/docker-registry`.
fn registry_bin() -> PathBuf {
    std::env::var_os("WCRI_REGISTRY_BIN")
        .map_or_else(|| PathBuf::from("/usr/bin/docker-registry"), PathBuf::from)
}

/// A running registry.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    addr: String,
    dir: tempfile::TempDir,
    /// Answers 401 without credentials.
    basic_auth: bool,
}

impl Registry {
    /// Starts a registry and waits until `GET /v2/` answers.
    pub fn start() -> Result<Registry> {
        Self::start_with(None)
    }

    /// Starts a registry that wants HTTP basic credentials `user`/`password` for everything
    /// (docker-registry's htpasswd auth; the bcrypt line is made here, no `htpasswd` tool needed).
    pub fn start_with_basic_auth(user: &str, password: &str) -> Result<Registry> {
        // Cost 4 is bcrypt's minimum: this secret guards a test registry for seconds.
        let hash = bcrypt::hash(password, 4).context("bcrypt the registry password")?;
        Self::start_with(Some(format!("{user}:{hash}\n")))
    }

    fn start_with(htpasswd: Option<String>) -> Result<Registry> {
        // The port is free when we look; another process could take it before the registry binds, so
        // retry a few times with fresh ports.
        let mut last = None;
        for _ in 0..5 {
            match Self::start_once(htpasswd.as_deref()) {
                Ok(r) => return Ok(r),
                Err(e) => last = Some(e),
            }
        }
        match last {
            Some(e) => Err(e),
            None => bail!("registry did not start"),
        }
    }

    fn start_once(htpasswd: Option<&str>) -> Result<Registry> {
        let dir = tempfile::Builder::new()
            .prefix("wcri-registry")
            .tempdir()
            .context("create registry dir")?;
        let port = free_port()?;
        let addr = format!("127.0.0.1:{port}");
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage)
            .with_context(|| format!("create {}", storage.display()))?;
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: error\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: {addr}\n",
            storage.display()
        );
        if let Some(lines) = htpasswd {
            let path = dir.path().join("htpasswd");
            std::fs::write(&path, lines).with_context(|| format!("write {}", path.display()))?;
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: wcri\n    path: {}\n",
                path.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config)
            .with_context(|| format!("write {}", config_path.display()))?;
        let log_path = dir.path().join("registry.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("create {}", log_path.display()))?;
        let log_err = log.try_clone().context("clone registry log handle")?;
        let bin = registry_bin();
        let child = Command::new(&bin)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .with_context(|| {
                format!("spawn {} (apt-get install docker-registry)", bin.display())
            })?;
        let mut registry = Registry {
            child,
            addr,
            dir,
            basic_auth: htpasswd.is_some(),
        };
        registry.wait_ready(Duration::from_secs(20))?;
        Ok(registry)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().context("poll registry")? {
                bail!("registry exited with {status}: {}", self.log());
            }
            if v2_answers(&self.addr, self.basic_auth) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "registry at {} not ready after {timeout:?}: {}",
                    self.addr,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts a registry holding every fixture as `wasm/<name>:latest` plus `linux/true:latest`
    /// (fixtures come from [`crate::fixtures_dir`], built once per process).
    pub fn start_with_fixtures() -> Result<Registry> {
        let registry = Self::start()?;
        registry.push_fixtures()?;
        Ok(registry)
    }

    /// Pushes every fixture (see [`Registry::start_with_fixtures`]); returns `(image, digest)` pairs.
    pub fn push_fixtures(&self) -> Result<Vec<(String, String)>> {
        let dir = crate::fixtures_dir()?;
        let paths: Vec<PathBuf> = crate::fixtures::FIXTURES
            .iter()
            .map(|f| crate::fixtures::fixture_path(dir, f.name))
            .collect();
        let addr = self.addr.clone();
        crate::image::block_on(async move { crate::image::push_all_fixtures(&addr, &paths).await })
    }

    /// Builds `spec` and pushes it as `repo_tag` (e.g. `wasm/custom:1`); returns the manifest digest.
    pub fn push(&self, repo_tag: &str, spec: &crate::ImageSpec) -> Result<String> {
        let (addr, repo_tag, spec) = (self.addr.clone(), repo_tag.to_string(), spec.clone());
        crate::image::block_on(
            async move { crate::image::push_image(&addr, &repo_tag, &spec).await },
        )
    }

    /// `127.0.0.1:PORT/<repo_tag>`, the reference a CRI client pulls.
    pub fn image_ref(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.addr)
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The registry's temp dir (config, storage, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback TCP port nobody listens on right now.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind a free port")?;
    Ok(listener.local_addr().context("local addr")?.port())
}

/// Whether `http://addr/v2/` answers: HTTP 200, or 401 for a registry that wants credentials.
fn v2_answers(addr: &str, basic_auth: bool) -> bool {
    let wanted: &[u8] = if basic_auth { b"401" } else { b"200" };
    let probe = || -> std::io::Result<bool> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(format!("GET /v2/ HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head)?;
        Ok(head.starts_with(b"HTTP/1.") && &head[9..12] == wanted)
    };
    probe().unwrap_or(false)
}
