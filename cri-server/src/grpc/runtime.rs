//! `runtime.v1.RuntimeService`: one line per RPC. Nothing here but delegation.

use proto::cri::runtime_service_server::RuntimeService;
use proto::cri::*;
use tonic::{Request, Response, Status};

use super::{Edge, Kind::Mutating, Kind::Polled};
use crate::error::ServerError;

type R<T> = Result<Response<T>, Status>;

fn unimplemented<T>(rpc: &'static str) -> Result<T, ServerError> {
    Err(ServerError::Unimplemented { rpc })
}

#[tonic::async_trait]
impl RuntimeService for Edge {
    async fn version(&self, r: Request<VersionRequest>) -> R<VersionResponse> {
        self.call("Version", Polled, |rt| async move {
            Ok(rt.version(r.into_inner()))
        })
        .await
    }
    async fn run_pod_sandbox(&self, r: Request<RunPodSandboxRequest>) -> R<RunPodSandboxResponse> {
        self.call("RunPodSandbox", Mutating, |rt| async move {
            rt.run_pod_sandbox(r.into_inner()).await
        })
        .await
    }
    async fn stop_pod_sandbox(
        &self,
        r: Request<StopPodSandboxRequest>,
    ) -> R<StopPodSandboxResponse> {
        self.call("StopPodSandbox", Mutating, |rt| async move {
            rt.stop_pod_sandbox(r.into_inner()).await
        })
        .await
    }
    async fn remove_pod_sandbox(
        &self,
        r: Request<RemovePodSandboxRequest>,
    ) -> R<RemovePodSandboxResponse> {
        self.call("RemovePodSandbox", Mutating, |rt| async move {
            rt.remove_pod_sandbox(r.into_inner()).await
        })
        .await
    }
    async fn pod_sandbox_status(
        &self,
        r: Request<PodSandboxStatusRequest>,
    ) -> R<PodSandboxStatusResponse> {
        self.call("PodSandboxStatus", Polled, |rt| async move {
            rt.pod_sandbox_status(r.into_inner())
        })
        .await
    }
    async fn list_pod_sandbox(
        &self,
        r: Request<ListPodSandboxRequest>,
    ) -> R<ListPodSandboxResponse> {
        self.call("ListPodSandbox", Polled, |rt| async move {
            Ok(rt.list_pod_sandbox(r.into_inner()))
        })
        .await
    }
    async fn create_container(
        &self,
        r: Request<CreateContainerRequest>,
    ) -> R<CreateContainerResponse> {
        self.call("CreateContainer", Mutating, |rt| async move {
            rt.create_container(r.into_inner()).await
        })
        .await
    }
    async fn start_container(
        &self,
        r: Request<StartContainerRequest>,
    ) -> R<StartContainerResponse> {
        self.call("StartContainer", Mutating, |rt| async move {
            rt.start_container(r.into_inner()).await
        })
        .await
    }
    async fn stop_container(&self, r: Request<StopContainerRequest>) -> R<StopContainerResponse> {
        self.call("StopContainer", Mutating, |rt| async move {
            rt.stop_container(r.into_inner()).await
        })
        .await
    }
    async fn remove_container(
        &self,
        r: Request<RemoveContainerRequest>,
    ) -> R<RemoveContainerResponse> {
        self.call("RemoveContainer", Mutating, |rt| async move {
            rt.remove_container(r.into_inner()).await
        })
        .await
    }
    async fn list_containers(
        &self,
        r: Request<ListContainersRequest>,
    ) -> R<ListContainersResponse> {
        self.call("ListContainers", Polled, |rt| async move {
            Ok(rt.list_containers(r.into_inner()))
        })
        .await
    }
    async fn container_status(
        &self,
        r: Request<ContainerStatusRequest>,
    ) -> R<ContainerStatusResponse> {
        self.call("ContainerStatus", Polled, |rt| async move {
            rt.container_status(r.into_inner())
        })
        .await
    }
    async fn update_container_resources(
        &self,
        _: Request<UpdateContainerResourcesRequest>,
    ) -> R<UpdateContainerResourcesResponse> {
        self.call("UpdateContainerResources", Mutating, |_| async {
            unimplemented("UpdateContainerResources")
        })
        .await
    }
    async fn reopen_container_log(
        &self,
        r: Request<ReopenContainerLogRequest>,
    ) -> R<ReopenContainerLogResponse> {
        self.call("ReopenContainerLog", Mutating, |rt| async move {
            rt.reopen_container_log(r.into_inner()).await
        })
        .await
    }
    async fn exec_sync(&self, r: Request<ExecSyncRequest>) -> R<ExecSyncResponse> {
        // Polled, not detached: exec probes run every few seconds, and a caller who gives up must end the
        // command rather than leave it running.
        self.call("ExecSync", Polled, |rt| async move {
            rt.exec_sync(r.into_inner()).await
        })
        .await
    }
    async fn exec(&self, r: Request<ExecRequest>) -> R<ExecResponse> {
        self.call(
            "Exec",
            Mutating,
            |rt| async move { rt.exec(r.into_inner()) },
        )
        .await
    }
    async fn attach(&self, r: Request<AttachRequest>) -> R<AttachResponse> {
        self.call(
            "Attach",
            Mutating,
            |rt| async move { rt.attach(r.into_inner()) },
        )
        .await
    }
    async fn port_forward(&self, r: Request<PortForwardRequest>) -> R<PortForwardResponse> {
        self.call("PortForward", Mutating, |rt| async move {
            rt.port_forward(r.into_inner())
        })
        .await
    }
    async fn container_stats(
        &self,
        r: Request<ContainerStatsRequest>,
    ) -> R<ContainerStatsResponse> {
        self.call("ContainerStats", Polled, |rt| async move {
            rt.container_stats(r.into_inner()).await
        })
        .await
    }
    async fn list_container_stats(
        &self,
        r: Request<ListContainerStatsRequest>,
    ) -> R<ListContainerStatsResponse> {
        self.call("ListContainerStats", Polled, |rt| async move {
            Ok(rt.list_container_stats(r.into_inner()).await)
        })
        .await
    }
    async fn pod_sandbox_stats(
        &self,
        r: Request<PodSandboxStatsRequest>,
    ) -> R<PodSandboxStatsResponse> {
        self.call("PodSandboxStats", Polled, |rt| async move {
            rt.pod_sandbox_stats(r.into_inner()).await
        })
        .await
    }
    async fn list_pod_sandbox_stats(
        &self,
        r: Request<ListPodSandboxStatsRequest>,
    ) -> R<ListPodSandboxStatsResponse> {
        self.call("ListPodSandboxStats", Polled, |rt| async move {
            Ok(rt.list_pod_sandbox_stats(r.into_inner()).await)
        })
        .await
    }
    async fn update_runtime_config(
        &self,
        r: Request<UpdateRuntimeConfigRequest>,
    ) -> R<UpdateRuntimeConfigResponse> {
        self.call("UpdateRuntimeConfig", Mutating, |rt| async move {
            Ok(rt.update_runtime_config(r.into_inner()))
        })
        .await
    }
    async fn status(&self, r: Request<StatusRequest>) -> R<StatusResponse> {
        self.call("Status", Polled, |rt| async move {
            Ok(rt.status(r.into_inner()))
        })
        .await
    }
    async fn checkpoint_container(
        &self,
        _: Request<CheckpointContainerRequest>,
    ) -> R<CheckpointContainerResponse> {
        self.call("CheckpointContainer", Mutating, |_| async {
            unimplemented("CheckpointContainer")
        })
        .await
    }
    type GetContainerEventsStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<ContainerEventResponse, Status>> + Send>,
    >;
    async fn get_container_events(
        &self,
        _: Request<GetEventsRequest>,
    ) -> R<Self::GetContainerEventsStream> {
        self.call("GetContainerEvents", Polled, |_| async {
            unimplemented("GetContainerEvents")
        })
        .await
    }
    async fn list_metric_descriptors(
        &self,
        _: Request<ListMetricDescriptorsRequest>,
    ) -> R<ListMetricDescriptorsResponse> {
        self.call("ListMetricDescriptors", Polled, |_| async {
            unimplemented("ListMetricDescriptors")
        })
        .await
    }
    async fn list_pod_sandbox_metrics(
        &self,
        _: Request<ListPodSandboxMetricsRequest>,
    ) -> R<ListPodSandboxMetricsResponse> {
        self.call("ListPodSandboxMetrics", Polled, |_| async {
            unimplemented("ListPodSandboxMetrics")
        })
        .await
    }
    async fn runtime_config(&self, r: Request<RuntimeConfigRequest>) -> R<RuntimeConfigResponse> {
        self.call("RuntimeConfig", Polled, |rt| async move {
            Ok(rt.runtime_config(r.into_inner()))
        })
        .await
    }
}
