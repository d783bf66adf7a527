//! CRI `ListPodSandboxStats` with every filter: id (or prefix), label selector. Pods whose pod process is gone
//! are listed with attributes only (as `PodSandboxStats` answers for them).

use proto::cri::{ListPodSandboxStatsRequest, ListPodSandboxStatsResponse};

use super::Runtime;
use crate::state::labels_match;

impl Runtime {
    pub async fn list_pod_sandbox_stats(
        &self,
        req: ListPodSandboxStatsRequest,
    ) -> ListPodSandboxStatsResponse {
        let f = req.filter.unwrap_or_default();
        let sandboxes: Vec<_> = self
            .store
            .sandboxes
            .iter()
            .filter(|s| f.id.is_empty() || s.meta.id.starts_with(&f.id))
            .filter(|s| labels_match(&f.label_selector, &s.meta.config.labels))
            .map(|s| std::sync::Arc::clone(s.value()))
            .collect();
        // All pods at once: one slow pod process (up to its timeout) must not add to every other pod's wait.
        let stats =
            futures::future::join_all(sandboxes.iter().map(|s| self.sandbox_stats(s))).await;
        ListPodSandboxStatsResponse { stats }
    }
}
