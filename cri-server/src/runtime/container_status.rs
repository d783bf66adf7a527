//! CRI `ContainerStatus`.

use proto::cri::{ContainerStatus, ContainerStatusRequest, ContainerStatusResponse, ImageSpec};

use super::{Runtime, info_map};
use crate::error::ServerError;
use crate::state::Container;

impl Runtime {
    pub fn container_status(
        &self,
        req: ContainerStatusRequest,
    ) -> Result<ContainerStatusResponse, ServerError> {
        let c = self.store.container(&req.container_id)?;
        let info = if req.verbose {
            info_map(&serde_json::json!({
                "podSandboxId": c.meta.pod_id,
                "rootfs": c.meta.rootfs,
                "imageName": c.meta.image_name,
                "config": c.meta.config,
            }))
        } else {
            Default::default()
        };
        Ok(ContainerStatusResponse {
            status: Some(cri_status(&c)),
            info,
        })
    }
}

pub(super) fn image_spec(c: &Container) -> ImageSpec {
    ImageSpec {
        image: c.meta.image_name.clone(),
        ..Default::default()
    }
}

fn cri_status(c: &Container) -> ContainerStatus {
    let r = c.record();
    ContainerStatus {
        id: c.meta.id.clone(),
        metadata: Some(c.metadata()),
        state: r.state.to_cri() as i32,
        created_at: c.meta.created_at,
        started_at: r.started_at,
        finished_at: r.finished_at,
        exit_code: r.exit_code,
        image: Some(image_spec(c)),
        image_ref: c.meta.image_ref.clone(),
        reason: r.reason,
        message: r.message,
        labels: c.meta.config.labels.clone(),
        annotations: c.meta.config.annotations.clone(),
        mounts: c.meta.config.mounts.clone(),
        log_path: c.meta.log_path.display().to_string(),
        resources: None,
        image_id: c.meta.image_id.clone(),
        user: c.meta.user.as_ref().map(|u| proto::cri::ContainerUser {
            linux: Some(proto::cri::LinuxContainerUser {
                uid: i64::from(u.uid),
                gid: i64::from(u.gid),
                supplemental_groups: u
                    .supplemental_groups
                    .iter()
                    .map(|g| i64::from(*g))
                    .collect(),
            }),
        }),
    }
}
