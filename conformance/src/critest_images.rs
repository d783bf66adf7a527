//! The images critest pulls, rebuilt as Wasm images around the toolbox fixture and pushed to one local
//! registry under the repository paths critest hard-codes. A registry mirror that maps `registry.k8s.io`,
//! `k8s.gcr.io`, `gcr.io` and `public.ecr.aws` to that registry then serves them under their original
//! names (see `conformance/critest.sh`).
//!
//! Each image is the toolbox at `/bin/busybox` with a hard link `/bin/<applet>` per applet, the
//! `/etc/passwd` and `/etc/group` of the busybox image, and whatever the original image adds on top
//! (a file, a `User`, a web root). Contents and `User` values follow critest's `images/` Dockerfiles and
//! the constants in `pkg/validate/consts.go`. The digest-pinned `test-image-digest@sha256:9700f9...` cannot
//! be reproduced (its digest is that of the real image) and is not pushed.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;

use crate::image::{ImageSpec, LayerEntry, LayerFile, push_image};

/// The applets of the toolbox, as `toolbox --list` prints them (a test checks the two agree).
pub const APPLETS: &[&str] = &[
    "[", "cat", "dd", "echo", "env", "false", "grep", "head", "hostname", "httpd", "id", "ipcs",
    "ls", "mkdir", "netstat", "pause", "pgrep", "pidof", "printf", "pwd", "rm", "rmdir", "sh",
    "sleep", "tail", "test", "top", "touch", "true", "wc", "yes",
];

/// PATH of the busybox image.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `/etc/passwd` of the busybox image.
pub const BUSYBOX_PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
daemon:x:1:1:daemon:/usr/sbin:/bin/false\n\
bin:x:2:2:bin:/bin:/bin/false\n\
sys:x:3:3:sys:/dev:/bin/false\n\
sync:x:4:100:sync:/bin:/bin/sync\n\
mail:x:8:8:mail:/var/spool/mail:/bin/false\n\
www-data:x:33:33:www-data:/var/www:/bin/false\n\
operator:x:37:37:Operator:/var:/bin/false\n\
nobody:x:65534:65534:nobody:/home:/bin/false\n";

/// `/etc/group` of the busybox image.
pub const BUSYBOX_GROUP: &str = "root:x:0:\n\
daemon:x:1:\n\
bin:x:2:\n\
sys:x:3:\n\
adm:x:4:\n\
tty:x:5:\n\
disk:x:6:\n\
lp:x:7:\n\
mail:x:8:\n\
kmem:x:9:\n\
wheel:x:10:root\n\
cdrom:x:11:\n\
dialout:x:18:\n\
floppy:x:19:\n\
video:x:28:\n\
audio:x:29:\n\
tape:x:32:\n\
www-data:x:33:\n\
operator:x:37:\n\
utmp:x:43:\n\
plugdev:x:46:\n\
staff:x:50:\n\
lock:x:54:\n\
netdev:x:82:\n\
users:x:100:\n\
nogroup:x:65534:\n";

/// What `images/image-predefined-group/Dockerfile` adds: default-user (uid 1000) in
/// group-defined-in-image (gid 50000).
const PREDEFINED_PASSWD: &str =
    "default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh\n";
const PREDEFINED_GROUP: &str =
    "default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n";

const NGINX_INDEX: &str = "<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n</head>\n<body>\n\
<h1>Welcome to nginx!</h1>\n<p>Served by the wasm-cri toolbox httpd (a WebAssembly stand-in for nginx).</p>\n\
</body>\n</html>\n";
const HTTPD_INDEX: &str = "<html><body><h1>It works!</h1></body></html>\n";

/// Label on every image saying what it is.
pub const STAND_IN_LABEL: &str = "io.wasm-cri.critest.stand-in-for";

/// One image to push: `repo:tag` as critest names it below the registry host, and its contents.
#[derive(Debug, Clone)]
pub struct CritestImage {
    pub name: String,
    pub spec: ImageSpec,
}

/// The busybox image: the toolbox at `/bin/busybox`, one hard link per applet (as in the real image, so masking
/// `/bin/ls` hides only ls), `/etc/passwd`, `/etc/group`, `/tmp`, `/root`, `/home`, `/var/www`; `PATH` and
/// `Cmd ["sh"]` as in the real image.
pub fn busybox_spec(toolbox: &Path, stands_in_for: &str) -> ImageSpec {
    let mut entries: Vec<LayerEntry> = APPLETS
        .iter()
        .map(|a| LayerEntry::hardlink(format!("/bin/{a}"), "/bin/busybox"))
        .collect();
    entries.extend([
        LayerEntry::data("/etc/passwd", BUSYBOX_PASSWD),
        LayerEntry::data("/etc/group", BUSYBOX_GROUP),
        LayerEntry::dir("/tmp", 0o1777),
        LayerEntry::dir("/root", 0o700),
        LayerEntry::dir("/home", 0o755),
        LayerEntry::dir("/var/www", 0o755),
        LayerEntry::dir("/usr/bin", 0o755),
        LayerEntry::dir("/usr/sbin", 0o755),
    ]);
    ImageSpec {
        files: vec![LayerFile::new(toolbox, "/bin/busybox")],
        cmd: vec!["sh".into()],
        env: vec![format!("PATH={DEFAULT_PATH}")],
        entries,
        labels: BTreeMap::from([(STAND_IN_LABEL.to_string(), stands_in_for.to_string())]),
        ..ImageSpec::default()
    }
}

/// busybox plus an empty file at `/<name>`, like `images/image-test/Dockerfile` (`ADD ${TEST} ${TEST}`).
fn with_marker(toolbox: &Path, stands_in_for: &str, marker: &str) -> ImageSpec {
    let mut spec = busybox_spec(toolbox, stands_in_for);
    spec.entries
        .push(LayerEntry::data(format!("/{marker}"), ""));
    spec
}

/// busybox serving `root` with the toolbox httpd on `port` (the runtime pre-opens the socket).
fn web_server(
    toolbox: &Path,
    stands_in_for: &str,
    root: &str,
    index: &str,
    port: u16,
) -> ImageSpec {
    let mut spec = busybox_spec(toolbox, stands_in_for);
    spec.entries
        .push(LayerEntry::data(format!("{root}/index.html"), index));
    spec.cmd = vec![
        "httpd".into(),
        "-f".into(),
        "-v".into(),
        "-p".into(),
        port.to_string(),
        "-h".into(),
        root.into(),
    ];
    spec.exposed_ports = vec![format!("{port}/tcp")];
    spec
}

fn user_image(toolbox: &Path, stands_in_for: &str, user: &str) -> ImageSpec {
    ImageSpec {
        user: Some(user.to_string()),
        ..busybox_spec(toolbox, stands_in_for)
    }
}

/// Every image critest (v1.36 `pkg/validate`, and the image-listing benchmark) pulls, in push order.
pub fn critest_images(toolbox: &Path) -> Vec<CritestImage> {
    let staging = "k8s-staging-cri-tools";
    let mut out = Vec::new();
    let mut add = |name: String, spec: ImageSpec| out.push(CritestImage { name, spec });

    add(
        "e2e-test-images/busybox:1.29-2".into(),
        busybox_spec(toolbox, "registry.k8s.io/e2e-test-images/busybox:1.29-2"),
    );
    add(
        "e2e-test-images/nginx:1.14-2".into(),
        web_server(
            toolbox,
            "registry.k8s.io/e2e-test-images/nginx:1.14-2",
            "/usr/share/nginx/html",
            NGINX_INDEX,
            80,
        ),
    );
    add(
        "e2e-test-images/httpd:2.4.39-4".into(),
        web_server(
            toolbox,
            "registry.k8s.io/e2e-test-images/httpd:2.4.39-4",
            "/usr/local/apache2/htdocs",
            HTTPD_INDEX,
            80,
        ),
    );
    // critest appends its own GOARCH; push the two architectures it is commonly built for.
    for arch in ["amd64", "arm64"] {
        let name = format!("{staging}/hostnet-nginx-{arch}:latest");
        add(
            name.clone(),
            web_server(
                toolbox,
                &format!("gcr.io/{name}"),
                "/usr/share/nginx/html",
                NGINX_INDEX,
                12003,
            ),
        );
    }
    for (image, user) in [
        ("test-image-user-uid", "1002"),
        ("test-image-user-username", "www-data"),
        ("test-image-user-uid-group", "1003:1004"),
        ("test-image-user-username-group", "www-data:1004"),
    ] {
        let name = format!("{staging}/{image}:latest");
        add(
            name.clone(),
            user_image(toolbox, &format!("gcr.io/{name}"), user),
        );
    }
    {
        let name = format!("{staging}/test-image-predefined-group:latest");
        let mut spec = user_image(toolbox, &format!("gcr.io/{name}"), "1000");
        for entry in &mut spec.entries {
            if let LayerEntry::Data {
                image_path, data, ..
            } = entry
            {
                if image_path == "/etc/passwd" {
                    data.extend_from_slice(PREDEFINED_PASSWD.as_bytes());
                } else if image_path == "/etc/group" {
                    data.extend_from_slice(PREDEFINED_GROUP.as_bytes());
                }
            }
        }
        spec.entries
            .push(LayerEntry::dir("/home/default-user", 0o755));
        add(name, spec);
    }
    for (image, tag, marker) in [
        ("test-image-latest", "latest", "test-image-latest"),
        ("test-image-tag", "test", "test"),
        ("test-image-tag", "all", "all"),
        // Three different images...
        ("test-image-1", "latest", "test-image-1"),
        ("test-image-2", "latest", "test-image-2"),
        ("test-image-3", "latest", "test-image-3"),
        // ...and one image under three tags (layers are deterministic, so the digests are equal).
        ("test-image-tags", "1", "same-image"),
        ("test-image-tags", "2", "same-image"),
        ("test-image-tags", "3", "same-image"),
    ] {
        let stands_in_for = format!("gcr.io/{staging}/{image}");
        add(
            format!("{staging}/{image}:{tag}"),
            with_marker(toolbox, &stands_in_for, marker),
        );
    }
    // registry.k8s.io/pause:3.9 and k8s.gcr.io/pause:3.9 (both mirrored here, so one image).
    add(
        "pause:3.9".into(),
        ImageSpec {
            files: vec![LayerFile::new(toolbox, "/pause")],
            entrypoint: vec!["/pause".into()],
            user: Some("65535:65535".into()),
            labels: BTreeMap::from([(
                STAND_IN_LABEL.to_string(),
                "registry.k8s.io/pause:3.9".to_string(),
            )]),
            ..ImageSpec::default()
        },
    );
    // The image-listing benchmark (public.ecr.aws/docker/library/busybox:*).
    for tag in ["1.35.0-glibc", "1-uclibc", "1", "1-glibc", "1-musl"] {
        add(
            format!("docker/library/busybox:{tag}"),
            busybox_spec(toolbox, "public.ecr.aws/docker/library/busybox"),
        );
    }
    out
}

/// Pushes [`critest_images`] to `registry` (host:port, plain HTTP); returns `(name, digest)` pairs.
pub async fn push_critest_images(registry: &str, toolbox: &Path) -> Result<Vec<(String, String)>> {
    let mut pushed = Vec::new();
    for image in critest_images(toolbox) {
        let digest = push_image(registry, &image.name, &image.spec).await?;
        pushed.push((image.name, digest));
    }
    Ok(pushed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::image::build_image;

    fn images() -> Vec<CritestImage> {
        critest_images(Path::new("/nonexistent/toolbox.wasm"))
    }

    fn config(spec: &ImageSpec) -> serde_json::Value {
        // build_image reads the toolbox file; give it a real one.
        let dir = tempfile::tempdir().unwrap();
        let toolbox = dir.path().join("toolbox.wasm");
        std::fs::write(&toolbox, crate::fixtures::MODULE_PREAMBLE).unwrap();
        let mut spec = spec.clone();
        for f in &mut spec.files {
            f.local = toolbox.clone();
        }
        serde_json::from_slice(&build_image(&spec).unwrap().config).unwrap()
    }

    fn find<'a>(all: &'a [CritestImage], name: &str) -> &'a CritestImage {
        all.iter()
            .find(|i| i.name == name)
            .unwrap_or_else(|| panic!("no image {name}"))
    }

    #[test]
    fn user_images_carry_critest_user_values() {
        let all = images();
        for (name, user) in [
            ("k8s-staging-cri-tools/test-image-user-uid:latest", "1002"),
            (
                "k8s-staging-cri-tools/test-image-user-username:latest",
                "www-data",
            ),
            (
                "k8s-staging-cri-tools/test-image-user-uid-group:latest",
                "1003:1004",
            ),
            (
                "k8s-staging-cri-tools/test-image-user-username-group:latest",
                "www-data:1004",
            ),
            (
                "k8s-staging-cri-tools/test-image-predefined-group:latest",
                "1000",
            ),
        ] {
            let c = config(&find(&all, name).spec);
            assert_eq!(c["config"]["User"], user, "{name}");
            assert_eq!(c["os"], "wasip1", "{name}");
        }
    }

    #[test]
    fn predefined_group_image_puts_default_user_in_group_50000() {
        let all = images();
        let spec = &find(
            &all,
            "k8s-staging-cri-tools/test-image-predefined-group:latest",
        )
        .spec;
        let text = |path: &str| {
            spec.entries
                .iter()
                .find_map(|e| match e {
                    LayerEntry::Data {
                        image_path, data, ..
                    } if image_path == path => Some(String::from_utf8(data.clone()).unwrap()),
                    _ => None,
                })
                .unwrap()
        };
        assert!(text("/etc/passwd").contains("\ndefault-user:x:1000:1000:"));
        assert!(text("/etc/group").contains("\ngroup-defined-in-image:x:50000:default-user\n"));
        assert!(text("/etc/passwd").contains("\nwww-data:x:33:33:"));
    }

    #[test]
    fn web_servers_expose_their_ports() {
        let all = images();
        for (name, port) in [
            ("e2e-test-images/nginx:1.14-2", "80/tcp"),
            ("e2e-test-images/httpd:2.4.39-4", "80/tcp"),
            (
                "k8s-staging-cri-tools/hostnet-nginx-amd64:latest",
                "12003/tcp",
            ),
        ] {
            let c = config(&find(&all, name).spec);
            assert!(c["config"]["ExposedPorts"][port].is_object(), "{name}: {c}");
            assert_eq!(c["config"]["Cmd"][0], "httpd", "{name}");
        }
    }

    #[test]
    fn tags_share_or_differ_as_critest_expects() {
        let all = images();
        let dir = tempfile::tempdir().unwrap();
        let toolbox = dir.path().join("toolbox.wasm");
        std::fs::write(&toolbox, crate::fixtures::MODULE_PREAMBLE).unwrap();
        let tar = |name: &str| {
            let mut spec = find(&all, name).spec.clone();
            for f in &mut spec.files {
                f.local = toolbox.clone();
            }
            crate::image::build_layer_tar_with(&spec.files, &spec.entries).unwrap()
        };
        let tags = [1, 2, 3].map(|t| tar(&format!("k8s-staging-cri-tools/test-image-tags:{t}")));
        assert!(tags[0] == tags[1] && tags[1] == tags[2]);
        let different =
            [1, 2, 3].map(|t| tar(&format!("k8s-staging-cri-tools/test-image-{t}:latest")));
        assert!(different[0] != different[1] && different[1] != different[2]);
        assert!(
            tar("k8s-staging-cri-tools/test-image-tag:test")
                != tar("k8s-staging-cri-tools/test-image-tag:all")
        );
    }

    #[test]
    fn names_are_unique_and_busybox_links_every_applet() {
        let all = images();
        let mut names: Vec<&str> = all.iter().map(|i| i.name.as_str()).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len());
        let busybox = &find(&all, "e2e-test-images/busybox:1.29-2").spec;
        for applet in APPLETS {
            assert!(
                busybox.entries.contains(&LayerEntry::hardlink(
                    format!("/bin/{applet}"),
                    "/bin/busybox"
                )),
                "{applet}"
            );
        }
    }
}
