//! CRI `ListContainerStats` with every filter: id (or prefix), pod sandbox id (or prefix), labels. Containers
//! whose pod process is gone have no counters any more and are left out (see `container_stats`).

use proto::cri::{ListContainerStatsRequest, ListContainerStatsResponse};

use super::Runtime;
use super::container_stats::{container_stats, pod_usage};
use crate::state::labels_match;

impl Runtime {
    pub async fn list_container_stats(
        &self,
        req: ListContainerStatsRequest,
    ) -> ListContainerStatsResponse {
        let f = req.filter.unwrap_or_default();
        let sandboxes: Vec<_> = self
            .store
            .sandboxes
            .iter()
            .filter(|s| f.pod_sandbox_id.is_empty() || s.meta.id.starts_with(&f.pod_sandbox_id))
            .map(|s| std::sync::Arc::clone(s.value()))
            .collect();
        let wanted: Vec<_> = sandboxes
            .into_iter()
            .map(|sandbox| {
                let containers: Vec<_> = self
                    .store
                    .containers_of(&sandbox.meta.id)
                    .into_iter()
                    .filter(|c| f.id.is_empty() || c.meta.id.starts_with(&f.id))
                    .filter(|c| labels_match(&f.label_selector, &c.meta.config.labels))
                    .collect();
                (sandbox, containers)
            })
            // Only ask pods that have a container left after filtering.
            .filter(|(_, containers)| !containers.is_empty())
            .collect();
        // All pods at once: one slow pod process (up to its timeout) must not add to every other pod's wait.
        let usages =
            futures::future::join_all(wanted.iter().map(|(sandbox, _)| pod_usage(sandbox))).await;
        let stats = wanted
            .iter()
            .zip(usages)
            .filter_map(|((_, containers), usage)| Some((containers, usage?)))
            .flat_map(|(containers, usage)| {
                containers
                    .iter()
                    .filter_map(|c| {
                        let u = usage.containers.get(&c.meta.id)?;
                        Some(container_stats(c, u, usage.timestamp))
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        ListContainerStatsResponse { stats }
    }
}
