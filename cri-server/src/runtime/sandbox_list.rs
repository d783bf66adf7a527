//! CRI `ListPodSandbox` with every filter: id (or unique prefix), state, label selector.

use proto::cri::{ListPodSandboxRequest, ListPodSandboxResponse, PodSandbox};

use super::Runtime;
use crate::state::labels_match;

impl Runtime {
    pub fn list_pod_sandbox(&self, req: ListPodSandboxRequest) -> ListPodSandboxResponse {
        let filter = req.filter.unwrap_or_default();
        let items = self
            .store
            .sandboxes
            .iter()
            .filter(|s| filter.id.is_empty() || s.meta.id.starts_with(&filter.id))
            .filter(|s| {
                filter
                    .state
                    .as_ref()
                    .is_none_or(|st| st.state == s.state().to_cri() as i32)
            })
            .filter(|s| labels_match(&filter.label_selector, &s.meta.config.labels))
            .map(|s| PodSandbox {
                id: s.meta.id.clone(),
                metadata: Some(s.metadata()),
                state: s.state().to_cri() as i32,
                created_at: s.meta.created_at,
                labels: s.meta.config.labels.clone(),
                annotations: s.meta.config.annotations.clone(),
                runtime_handler: s.meta.runtime_handler.clone(),
            })
            .collect();
        ListPodSandboxResponse { items }
    }
}
