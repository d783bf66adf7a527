//! CRI `CreateContainer`: resolves what to run from the image and the container config (Docker/containerd
//! rules), prepares the container's private root, and registers the container with its pod process, which
//! compiles the Wasm (so a non-Wasm entrypoint fails here, with a message that says so) or maps the artifact
//! of the precompile cache the daemon chose for it (`precompiled.rs`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use proto::cri::{ContainerConfig, CreateContainerRequest, CreateContainerResponse};
use proto::pod::{ContainerSpec, Preopen};
use tracing::info;

use super::{
    Cleanup, Runtime, capabilities, http_concurrency, identity, listen_ports, now_nanos, rootfs,
};
use crate::error::ServerError;
use crate::ids::new_id;
use crate::state::{Container, ContainerMeta, SandboxState, persist_remove_dir};

impl Runtime {
    pub async fn create_container(
        self: &Arc<Self>,
        req: CreateContainerRequest,
    ) -> Result<CreateContainerResponse, ServerError> {
        let config = req
            .config
            .ok_or_else(|| ServerError::InvalidArgument("CreateContainer needs a config".into()))?;
        let md = config.metadata.clone().ok_or_else(|| {
            ServerError::InvalidArgument("config.metadata.name is required".into())
        })?;
        if md.name.is_empty() {
            return Err(ServerError::InvalidArgument(
                "config.metadata.name must not be empty".into(),
            ));
        }
        let sandbox = self.store.sandbox(&req.pod_sandbox_id)?;
        if sandbox.state() != SandboxState::Ready {
            return Err(ServerError::FailedPrecondition(format!(
                "pod sandbox {} is not ready; containers can only be created in a ready sandbox",
                sandbox.meta.id
            )));
        }
        let pod_id = sandbox.meta.id.clone();

        // A retried create (same pod, name and attempt) returns the container the first call made.
        let key = format!("{pod_id}/{}/{}", md.name, md.attempt);
        self.with_name_lock(&key, async {
            let existing = self.store.containers_of(&pod_id).into_iter().find(|c| {
                let m = c.metadata();
                m.name == md.name && m.attempt == md.attempt
            });
            match existing {
                Some(c) => {
                    info!(container_id = %c.meta.id, name = %md.name, "CreateContainer retried; returning the existing container");
                    Ok(CreateContainerResponse {
                        container_id: c.meta.id.clone(),
                    })
                }
                None => self.create_in(&sandbox, config).await,
            }
        })
        .await
    }

    async fn create_in(
        &self,
        sandbox: &crate::state::Sandbox,
        config: ContainerConfig,
    ) -> Result<CreateContainerResponse, ServerError> {
        let image_name = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        if image_name.is_empty() {
            return Err(ServerError::InvalidArgument(
                "config.image.image must name an image".into(),
            ));
        }
        check_security_context(&config)?;
        let image = self
            .images
            .get(&image_name)
            .ok_or_else(|| ServerError::NotFound {
                kind: "image",
                id: image_name.clone(),
            })?;

        let id = new_id();
        let mut cleanup = Cleanup::new();
        let dir = self.store.containers_dir().join(&id);
        {
            let d = dir.clone();
            cleanup.push("container dir", move || {
                let _ = std::fs::remove_dir_all(d);
            });
        }
        let root = dir.join("rootfs");
        let (src, dst) = (image.rootfs.clone(), root.clone());
        tokio::task::spawn_blocking(move || rootfs::copy_tree(&src, &dst))
            .await
            .map_err(|source| ServerError::Task {
                rpc: "CreateContainer",
                source,
            })?
            .map_err(|e| ServerError::io("copying image files into", &root, e))?;
        // Files written over the image's copy: a program among them is not the image's any more.
        let mut replaced = copy_pod_etc(&sandbox.meta.state_dir.join("etc"), &root.join("etc"))?;

        let env = merge_env(&image.config.env, &config.envs);
        let argv = argv(
            &image.config.entrypoint,
            &image.config.cmd,
            &config.command,
            &config.args,
        );
        let Some(argv0) = argv.first() else {
            // Images of several raw Wasm layers get no Entrypoint (none of them is "the" program): name them.
            let wasm = self.images.wasm_paths(&image).await.unwrap_or_default();
            return Err(ServerError::FailedPrecondition(no_program_message(
                &image_name,
                &wasm,
            )));
        };
        let workdir = if !config.working_dir.is_empty() {
            config.working_dir.clone()
        } else if !image.config.working_dir.is_empty() {
            image.config.working_dir.clone()
        } else {
            "/".to_string()
        };
        let path_env = env.get("PATH").map(String::as_str);
        let (guest_program, host_program) =
            rootfs::find_program(&root, argv0, path_env, &workdir).ok_or_else(|| {
                ServerError::FailedPrecondition(format!(
                    "image {image_name}: the program {argv0:?} (argv[0]) was not found in the image's files{}",
                    if argv0.contains('/') { String::new() } else { " on the container's PATH".to_string() }
                ))
            })?;

        let security = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref());
        let read_only_root = security.is_some_and(|s| s.readonly_rootfs);
        let mut preopens = vec![Preopen {
            host_path: root.display().to_string(),
            guest_path: "/".into(),
            read_only: read_only_root,
            // The root copy has no mounts below it.
            recursive_read_only: false,
        }];
        for m in &config.mounts {
            let host = Path::new(&m.host_path);
            if m.container_path.is_empty() || !m.container_path.starts_with('/') {
                return Err(ServerError::InvalidArgument(format!(
                    "mount container_path {:?} must be an absolute path",
                    m.container_path
                )));
            }
            check_recursive_read_only(m)?;
            match std::fs::metadata(host) {
                Ok(meta) if meta.is_dir() => preopens.push(Preopen {
                    host_path: m.host_path.clone(),
                    guest_path: m.container_path.clone(),
                    read_only: m.readonly,
                    recursive_read_only: m.recursive_read_only,
                }),
                // WASI can only pre-open directories: a file mount is copied into the container's root at
                // create time (later changes on the host are not seen).
                Ok(_) => replaced.push(copy_file_mount(host, &root, &m.container_path)?),
                Err(e) => return Err(ServerError::io("mount source", host, e)),
            }
        }

        let log_path = log_path(sandbox, &config, &dir);
        let mut env_list: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        env_list.push(format!("PWD={workdir}"));
        let memory_limit = config
            .linux
            .as_ref()
            .and_then(|l| l.resources.as_ref())
            .map(|r| r.memory_limit_in_bytes)
            .filter(|m| *m > 0)
            .unwrap_or(0) as u64;
        let mut run_as = identity::resolve(security, &image.config.user, &root)?;
        run_as.capabilities = capabilities::resolve(security)?;
        let user = crate::state::ContainerUser {
            uid: run_as.uid,
            gid: run_as.gid,
            supplemental_groups: run_as.additional_gids.clone(),
        };
        let listen_ports = listen_ports::listen_ports(
            &config.annotations,
            &sandbox.meta.config.annotations,
            config.metadata.as_ref().map_or("", |m| m.name.as_str()),
            &image.config.exposed_ports,
        )?;
        let precompiled_path = self
            .precompiled_path(&image, &root, &host_program, &replaced)
            .await;
        let spec = ContainerSpec {
            id: id.clone(),
            wasm_path: host_program.display().to_string(),
            args: argv.clone(),
            env: env_list,
            preopens,
            log_path: log_path.display().to_string(),
            memory_limit_bytes: memory_limit,
            working_dir: workdir,
            stdin: config.stdin,
            stdin_once: config.stdin_once,
            masked_paths: security.map(|s| s.masked_paths.clone()).unwrap_or_default(),
            readonly_paths: security
                .map(|s| s.readonly_paths.clone())
                .unwrap_or_default(),
            run_as: Some(run_as),
            listen_ports,
            http_max_concurrency: http_concurrency::http_max_concurrency(
                &config.annotations,
                &sandbox.meta.config.annotations,
                config.metadata.as_ref().map_or("", |m| m.name.as_str()),
            )?,
            precompiled_path,
        };

        let mut client = sandbox.client().ok_or_else(|| {
            ServerError::FailedPrecondition(format!(
                "pod sandbox {} has no running pod process",
                sandbox.meta.id
            ))
        })?;
        client
            .create_container(spec)
            .await
            .map_err(|status| ServerError::PodRpc {
                op: format!("image {image_name}: cannot run {guest_program}"),
                status,
            })?;
        {
            let sock = sandbox.client();
            let cid = id.clone();
            cleanup.push("pod container", move || {
                if let Some(mut c) = sock {
                    tokio::spawn(async move {
                        let _ = c
                            .remove_container(proto::pod::ContainerRef { id: cid })
                            .await;
                    });
                }
            });
        }

        let image_ref = image
            .repo_digests
            .first()
            .cloned()
            .unwrap_or_else(|| image.id.clone());
        let meta = ContainerMeta {
            version: 1,
            id: id.clone(),
            pod_id: sandbox.meta.id.clone(),
            config,
            created_at: now_nanos(),
            image_id: image.id.clone(),
            image_name,
            image_ref,
            log_path,
            rootfs: root,
            user: Some(user),
        };
        let container = Container::create(dir, meta)?;
        self.store
            .containers
            .insert(id.clone(), Arc::new(container));
        cleanup.disarm();
        info!(pod_id = %sandbox.meta.id, container_id = %id, program = %guest_program, "container created");
        Ok(CreateContainerResponse { container_id: id })
    }

    /// Deletes a container's private files (its root copy and records). Logs stay: the kubelet owns them.
    pub(crate) fn remove_container_files(&self, c: &Container) -> Result<(), ServerError> {
        persist_remove_dir(c.dir())
    }
}

/// Why a container without command in an image without Entrypoint/Cmd cannot run, and what to do.
fn no_program_message(image_name: &str, wasm: &[String]) -> String {
    let head =
        format!("image {image_name} has no Entrypoint or Cmd and the container gives no command");
    match wasm {
        [] => format!(
            "{head}: wasm-cri needs the path of the .wasm file to run; set the container's command"
        ),
        [only] => format!("{head}; set the container's command to [\"{only}\"], its Wasm file"),
        several => format!(
            "{head}, and it has several Wasm files ({}): set the container's command to the one to run",
            several.join(", ")
        ),
    }
}

/// Docker/containerd rules: a CRI command replaces the image Entrypoint (and then the image Cmd is dropped);
/// CRI args replace the image Cmd.
pub fn argv(
    entrypoint: &[String],
    cmd: &[String],
    command: &[String],
    args: &[String],
) -> Vec<String> {
    let (ep, c) = if !command.is_empty() {
        (command, args)
    } else {
        (entrypoint, if args.is_empty() { cmd } else { args })
    };
    ep.iter().chain(c).cloned().collect()
}

/// Image env first, CRI envs override by key; order is stable.
pub fn merge_env(image_env: &[String], envs: &[proto::cri::KeyValue]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for kv in image_env {
        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
        out.insert(k.to_string(), v.to_string());
    }
    for kv in envs {
        out.insert(kv.key.clone(), kv.value.clone());
    }
    out
}

fn log_path(sandbox: &crate::state::Sandbox, config: &ContainerConfig, dir: &Path) -> PathBuf {
    let log_dir = &sandbox.meta.config.log_directory;
    if !log_dir.is_empty() && !config.log_path.is_empty() {
        Path::new(log_dir).join(&config.log_path)
    } else {
        // The kubelet always sets both; for callers that do not, logs still go somewhere inspectable.
        dir.join("container.log")
    }
}

/// Combinations a Linux runtime refuses, refused the same way (containerd: "user group is specified without
/// user"): a group means nothing without the user it applies to.
fn check_security_context(config: &ContainerConfig) -> Result<(), ServerError> {
    let Some(sc) = config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
    else {
        return Ok(());
    };
    if sc.run_as_group.is_some() && sc.run_as_user.is_none() && sc.run_as_username.is_empty() {
        return Err(ServerError::InvalidArgument(
            "linux.security_context.run_as_group is set without run_as_user or run_as_username; set the user too"
                .into(),
        ));
    }
    Ok(())
}

/// A recursive read-only mount must be read-only and private, as the kubelet and containerd require: a
/// mount that propagates could gain writable submounts later.
fn check_recursive_read_only(m: &proto::cri::Mount) -> Result<(), ServerError> {
    if !m.recursive_read_only {
        return Ok(());
    }
    if !m.readonly {
        return Err(ServerError::InvalidArgument(format!(
            "mount {}: recursive_read_only needs readonly to be true as well",
            m.container_path
        )));
    }
    if m.propagation != proto::cri::MountPropagation::PropagationPrivate as i32 {
        return Err(ServerError::InvalidArgument(format!(
            "mount {}: recursive_read_only needs private propagation (PROPAGATION_PRIVATE), not {}",
            m.container_path,
            proto::cri::MountPropagation::try_from(m.propagation)
                .map(|p| p.as_str_name())
                .unwrap_or("an unknown propagation")
        )));
    }
    Ok(())
}

/// Copies the pod's `/etc` files into the container's root; returns the paths written.
fn copy_pod_etc(from: &Path, to: &Path) -> Result<Vec<PathBuf>, ServerError> {
    std::fs::create_dir_all(to).map_err(|e| ServerError::io("creating", to, e))?;
    let mut written = Vec::new();
    for name in ["hostname", "hosts", "resolv.conf"] {
        let dst = to.join(name);
        // The image may ship its own as a symlink; the pod's file replaces it.
        let _ = std::fs::remove_file(&dst);
        std::fs::copy(from.join(name), &dst)
            .map_err(|e| ServerError::io("copying pod file to", &dst, e))?;
        written.push(dst);
    }
    Ok(written)
}

/// Copies a file mount into the container's root; returns the path written.
fn copy_file_mount(host: &Path, root: &Path, container_path: &str) -> Result<PathBuf, ServerError> {
    let dst = root.join(container_path.trim_start_matches('/'));
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent).map_err(|e| ServerError::io("creating", parent, e))?;
    }
    let _ = std::fs::remove_file(&dst);
    std::fs::copy(host, &dst).map_err(|e| ServerError::io("copying file mount to", &dst, e))?;
    Ok(dst)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn argv_follows_docker_rules() {
        let (ep, cmd) = (s(&["/app.wasm"]), s(&["--serve"]));
        assert_eq!(argv(&ep, &cmd, &[], &[]), s(&["/app.wasm", "--serve"]));
        assert_eq!(argv(&ep, &cmd, &[], &s(&["x"])), s(&["/app.wasm", "x"]));
        assert_eq!(
            argv(&ep, &cmd, &s(&["/other.wasm"]), &[]),
            s(&["/other.wasm"])
        );
        assert_eq!(
            argv(&ep, &cmd, &s(&["/o.wasm"]), &s(&["a"])),
            s(&["/o.wasm", "a"])
        );
        assert_eq!(argv(&[], &cmd, &[], &[]), s(&["--serve"]));
    }

    #[test]
    fn run_as_group_needs_a_user() {
        use proto::cri::{Int64Value, LinuxContainerConfig, LinuxContainerSecurityContext};
        let with = |sc: LinuxContainerSecurityContext| ContainerConfig {
            linux: Some(LinuxContainerConfig {
                security_context: Some(sc),
                ..Default::default()
            }),
            ..Default::default()
        };
        let group = Some(Int64Value { value: 1002 });
        let err = check_security_context(&with(LinuxContainerSecurityContext {
            run_as_group: group,
            ..Default::default()
        }));
        assert!(matches!(err, Err(ServerError::InvalidArgument(_))));
        assert!(
            check_security_context(&with(LinuxContainerSecurityContext {
                run_as_group: group,
                run_as_user: Some(Int64Value { value: 1 }),
                ..Default::default()
            }))
            .is_ok()
        );
        assert!(check_security_context(&ContainerConfig::default()).is_ok());
    }

    #[test]
    fn missing_program_message_names_the_wasm_files() {
        let several = no_program_message("x", &s(&["/a.wasm", "/b.wasm"]));
        assert!(
            several.contains("several Wasm files (/a.wasm, /b.wasm)"),
            "{several}"
        );
        assert!(several.contains("set the container's command"), "{several}");
        assert!(no_program_message("x", &s(&["/a.wasm"])).contains(r#"["/a.wasm"]"#));
        assert!(no_program_message("x", &[]).contains("set the container's command"));
    }

    #[test]
    fn cri_env_overrides_image_env() {
        let env = merge_env(
            &s(&["PATH=/bin", "A=1"]),
            &[proto::cri::KeyValue {
                key: "A".into(),
                value: "2".into(),
            }],
        );
        assert_eq!(env.get("A").map(String::as_str), Some("2"));
        assert_eq!(env.get("PATH").map(String::as_str), Some("/bin"));
    }
}
