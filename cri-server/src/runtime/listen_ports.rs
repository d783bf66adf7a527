//! Which TCP ports a container's core module gets as pre-opened listening sockets (WASI preview 1 cannot bind
//! sockets itself; the pod process binds them and hands them over, `LISTEN_FDS` style).
//!
//! In order of precedence:
//! 1. the container annotation `wasm-cri.io/listen` (crictl and other direct CRI users);
//! 2. the pod annotation `wasm-cri.io/listen.<container name>` (Kubernetes: pod annotations reach the runtime,
//!    container annotations cannot be set, and the kubelet's port mappings do not say which container a
//!    `containerPort` belongs to);
//! 3. the image config's `ExposedPorts` with protocol `tcp` (or none given); other protocols are skipped.
//!
//! An annotation is a list of ports separated by commas or spaces, each `PORT` or `PORT/tcp`; an empty value
//! means no listeners at all (to switch off the image's). Ports are de-duplicated; annotation order is kept
//! (it is the guest's fd order), image ports are sorted numerically.

use std::collections::HashMap;

use crate::error::ServerError;

/// The container (or, suffixed with `.<container name>`, pod) annotation listing the listen ports.
pub const LISTEN_ANNOTATION: &str = "wasm-cri.io/listen";

/// The listen ports of a container; InvalidArgument for a malformed annotation.
pub fn listen_ports(
    container_annotations: &HashMap<String, String>,
    pod_annotations: &HashMap<String, String>,
    container_name: &str,
    exposed_ports: &[String],
) -> Result<Vec<u32>, ServerError> {
    let pod_key = format!("{LISTEN_ANNOTATION}.{container_name}");
    let annotated = container_annotations
        .get(LISTEN_ANNOTATION)
        .map(|v| (LISTEN_ANNOTATION, v))
        .or_else(|| pod_annotations.get(&pod_key).map(|v| (pod_key.as_str(), v)));
    if let Some((key, value)) = annotated {
        let mut ports = Vec::new();
        for item in value.split([',', ' ']).filter(|s| !s.is_empty()) {
            let port = parse(item).ok_or_else(|| {
                ServerError::InvalidArgument(format!(
                    "annotation {key}: {item:?} is not a TCP port (PORT or PORT/tcp, 1-65535)"
                ))
            })?;
            if !ports.contains(&port) {
                ports.push(port);
            }
        }
        return Ok(ports);
    }
    let mut ports: Vec<u32> = exposed_ports
        .iter()
        .filter_map(|p| {
            let port = parse(p);
            if port.is_none() {
                tracing::debug!(exposed_port = %p, "image port is not TCP; no listener pre-opened for it");
            }
            port
        })
        .collect();
    ports.sort_unstable();
    ports.dedup();
    Ok(ports)
}

/// `PORT` or `PORT/tcp` (Docker's notation, protocol case-insensitive) as a port number from 1 up.
fn parse(item: &str) -> Option<u32> {
    let (port, proto) = item.split_once('/').unwrap_or((item, "tcp"));
    if !proto.eq_ignore_ascii_case("tcp") {
        return None;
    }
    let port: u16 = port.trim().parse().ok()?;
    (port > 0).then_some(u32::from(port))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn image_tcp_ports_sorted_numerically_others_skipped() {
        let got = listen_ports(
            &map(&[]),
            &map(&[]),
            "web",
            &s(&["8080/tcp", "53/udp", "443/TCP", "80", "80/tcp", "x/tcp"]),
        )
        .unwrap();
        assert_eq!(got, [80, 443, 8080]);
    }

    #[test]
    fn container_annotation_wins_and_keeps_its_order() {
        let got = listen_ports(
            &map(&[(LISTEN_ANNOTATION, "9090, 8080/tcp 9090")]),
            &map(&[("wasm-cri.io/listen.web", "1")]),
            "web",
            &s(&["80/tcp"]),
        )
        .unwrap();
        assert_eq!(got, [9090, 8080]);
    }

    #[test]
    fn pod_annotation_names_the_container() {
        let pod = map(&[("wasm-cri.io/listen.web", "8443")]);
        assert_eq!(
            listen_ports(&map(&[]), &pod, "web", &s(&["80/tcp"])).unwrap(),
            [8443]
        );
        assert_eq!(
            listen_ports(&map(&[]), &pod, "sidecar", &s(&["80/tcp"])).unwrap(),
            [80]
        );
    }

    #[test]
    fn an_empty_annotation_turns_the_image_ports_off() {
        let got = listen_ports(
            &map(&[(LISTEN_ANNOTATION, "")]),
            &map(&[]),
            "web",
            &s(&["80/tcp"]),
        )
        .unwrap();
        assert!(got.is_empty());
    }

    #[test]
    fn malformed_annotations_are_refused_with_the_item() {
        for bad in ["0", "65536", "80/udp", "http"] {
            let err =
                listen_ports(&map(&[(LISTEN_ANNOTATION, bad)]), &map(&[]), "web", &[]).unwrap_err();
            match err {
                ServerError::InvalidArgument(m) => assert!(m.contains(bad), "{m}"),
                other => panic!("{other:?}"),
            }
        }
    }
}
