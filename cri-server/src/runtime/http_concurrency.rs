//! How many requests a wasi:http handler container serves at once (`ContainerSpec.http_max_concurrency`).
//!
//! The container annotation `wasm-cri.io/http-max-concurrency` (crictl and other direct CRI users), else the
//! pod annotation `wasm-cri.io/http-max-concurrency.<container name>` (Kubernetes, where only pod annotations
//! reach the runtime), else the pod process's default (0 here; 100 there). Requests past the limit wait for a
//! slot with their connection open. Ignored for containers that are not handlers.

use std::collections::HashMap;

use crate::error::ServerError;

/// The container (or, suffixed with `.<container name>`, pod) annotation.
pub const CONCURRENCY_ANNOTATION: &str = "wasm-cri.io/http-max-concurrency";

/// The limit the annotations set; 0 (the pod's default) when none does. InvalidArgument for a value that is
/// not a positive integer.
pub fn http_max_concurrency(
    container_annotations: &HashMap<String, String>,
    pod_annotations: &HashMap<String, String>,
    container_name: &str,
) -> Result<u32, ServerError> {
    let pod_key = format!("{CONCURRENCY_ANNOTATION}.{container_name}");
    let Some((key, value)) = container_annotations
        .get(CONCURRENCY_ANNOTATION)
        .map(|v| (CONCURRENCY_ANNOTATION, v))
        .or_else(|| pod_annotations.get(&pod_key).map(|v| (pod_key.as_str(), v)))
    else {
        return Ok(0);
    };
    match value.trim().parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(ServerError::InvalidArgument(format!(
            "annotation {key}: {value:?} is not a number of requests (a whole number from 1 to {})",
            u32::MAX
        ))),
    }
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

    #[test]
    fn container_annotation_then_pod_annotation_then_default() {
        let pod = map(&[("wasm-cri.io/http-max-concurrency.web", "7")]);
        let own = map(&[(CONCURRENCY_ANNOTATION, "3")]);
        assert_eq!(http_max_concurrency(&own, &pod, "web").unwrap(), 3);
        assert_eq!(http_max_concurrency(&map(&[]), &pod, "web").unwrap(), 7);
        assert_eq!(http_max_concurrency(&map(&[]), &pod, "other").unwrap(), 0);
    }

    #[test]
    fn refuses_zero_and_words() {
        for bad in ["0", "-1", "many", ""] {
            let own = map(&[(CONCURRENCY_ANNOTATION, bad)]);
            let err = http_max_concurrency(&own, &map(&[]), "web").unwrap_err();
            assert!(
                matches!(err, ServerError::InvalidArgument(ref m) if m.contains(CONCURRENCY_ANNOTATION)),
                "{err:?}"
            );
        }
    }
}
