//! CRI `ListContainers` with every filter: id (or unique prefix), state, pod sandbox id (or prefix), labels.

use proto::cri::{Container, ListContainersRequest, ListContainersResponse};

use super::Runtime;
use super::container_status::image_spec;
use crate::state::labels_match;

impl Runtime {
    pub fn list_containers(&self, req: ListContainersRequest) -> ListContainersResponse {
        let f = req.filter.unwrap_or_default();
        let containers = self
            .store
            .containers
            .iter()
            .filter(|c| f.id.is_empty() || c.meta.id.starts_with(&f.id))
            .filter(|c| f.pod_sandbox_id.is_empty() || c.meta.pod_id.starts_with(&f.pod_sandbox_id))
            .filter(|c| {
                f.state
                    .as_ref()
                    .is_none_or(|s| s.state == c.state().to_cri() as i32)
            })
            .filter(|c| labels_match(&f.label_selector, &c.meta.config.labels))
            .map(|c| Container {
                id: c.meta.id.clone(),
                pod_sandbox_id: c.meta.pod_id.clone(),
                metadata: Some(c.metadata()),
                image: Some(image_spec(&c)),
                image_ref: c.meta.image_ref.clone(),
                state: c.state().to_cri() as i32,
                created_at: c.meta.created_at,
                labels: c.meta.config.labels.clone(),
                annotations: c.meta.config.annotations.clone(),
                image_id: c.meta.image_id.clone(),
            })
            .collect();
        ListContainersResponse { containers }
    }
}
