//! `runtime.v1.ImageService`: one line per RPC. Nothing here but delegation.

use proto::cri::image_service_server::ImageService;
use proto::cri::*;
use tonic::{Request, Response, Status};

use super::{Edge, Kind::Bounded, Kind::Mutating, Kind::Polled};

type R<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl ImageService for Edge {
    async fn list_images(&self, r: Request<ListImagesRequest>) -> R<ListImagesResponse> {
        self.call("ListImages", Polled, |rt| async move {
            Ok(rt.list_images(r.into_inner()))
        })
        .await
    }
    async fn image_status(&self, r: Request<ImageStatusRequest>) -> R<ImageStatusResponse> {
        self.call("ImageStatus", Polled, |rt| async move {
            Ok(rt.image_status(r.into_inner()))
        })
        .await
    }
    async fn pull_image(&self, r: Request<PullImageRequest>) -> R<PullImageResponse> {
        let deadline = super::deadline(&r);
        self.call("PullImage", Bounded(deadline), |rt| async move {
            rt.pull_image(r.into_inner()).await
        })
        .await
    }
    async fn remove_image(&self, r: Request<RemoveImageRequest>) -> R<RemoveImageResponse> {
        self.call("RemoveImage", Mutating, |rt| async move {
            rt.remove_image(r.into_inner()).await
        })
        .await
    }
    async fn image_fs_info(&self, r: Request<ImageFsInfoRequest>) -> R<ImageFsInfoResponse> {
        self.call("ImageFsInfo", Polled, |rt| async move {
            rt.image_fs_info(r.into_inner()).await
        })
        .await
    }
}
