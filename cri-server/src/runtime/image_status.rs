//! CRI `ImageStatus`: an unknown image is `image: null`, not an error (api.proto: "If the image is not
//! present, returns a response with ImageStatusResponse.Image set to nil").

use proto::cri::{Image, ImageSpec, ImageStatusRequest, ImageStatusResponse, Int64Value};

use super::{Runtime, info_map};

impl Runtime {
    pub fn image_status(&self, req: ImageStatusRequest) -> ImageStatusResponse {
        let lookup = req.image.map(|i| i.image).unwrap_or_default();
        let Some(image) = self.images.get(&lookup) else {
            return ImageStatusResponse::default();
        };
        let info = if req.verbose {
            info_map(&serde_json::json!({
                "config": image.config,
                "os": image.os,
                "architecture": image.architecture,
                "rootfs": image.rootfs,
            }))
        } else {
            Default::default()
        };
        ImageStatusResponse {
            image: Some(cri_image(&image)),
            info,
        }
    }
}

/// The CRI view of an image record. `uid`/`username` come from the config's `User` (numeric → uid).
pub(super) fn cri_image(i: &imageservice::Image) -> Image {
    let user = i.config.user.split(':').next().unwrap_or_default();
    let (uid, username) = match user.parse::<i64>() {
        Ok(n) => (Some(Int64Value { value: n }), String::new()),
        Err(_) => (None, user.to_string()),
    };
    Image {
        id: i.id.clone(),
        repo_tags: i.repo_tags.clone(),
        repo_digests: i.repo_digests.clone(),
        size: i.size,
        uid,
        username,
        spec: Some(ImageSpec {
            image: i.id.clone(),
            ..Default::default()
        }),
        pinned: false,
    }
}
