//! CRI `ListImages` (filter by image reference).

use proto::cri::{ListImagesRequest, ListImagesResponse};

use super::Runtime;
use super::image_status::cri_image;

impl Runtime {
    pub fn list_images(&self, req: ListImagesRequest) -> ListImagesResponse {
        let wanted = req
            .filter
            .and_then(|f| f.image)
            .map(|i| i.image)
            .filter(|s| !s.is_empty());
        let images = match wanted {
            Some(lookup) => self
                .images
                .get(&lookup)
                .into_iter()
                .map(|i| cri_image(&i))
                .collect(),
            None => self.images.list().iter().map(cri_image).collect(),
        };
        ListImagesResponse { images }
    }
}
