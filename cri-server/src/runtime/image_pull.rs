//! CRI `PullImage`: the image id (config digest) is the `image_ref` returned.
//!
//! Credentials: `auth.username`/`password`, `auth.auth` (base64 of `user:password`) or
//! `auth.registry_token` (a bearer token sent as is), in that order of preference. Without any, the
//! config file's credentials for the registry are used (`[registries."<host>"]`), else none. The
//! caller's deadline (`grpc-timeout`) is enforced by the gRPC edge (`grpc/mod.rs`), which stops
//! the pull when it passes; concurrent pulls of one reference share one download (imageservice).
//!
//! Precompiling: once the image is recorded, its Wasm files are compiled into the image store's precompile
//! cache before the pull answers, so the kubelet's first container start maps native code instead of
//! compiling (the compile moves out of pod start-up, where the kubelet waits on it for every new pod). It
//! runs on blocking threads; a failure is logged and the pull still succeeds (the pod process compiles, and a
//! module that does not compile fails CreateContainer as it would without the cache).

use std::time::Instant;

use imageservice::Image;
use proto::cri::{AuthConfig, PullImageRequest, PullImageResponse};
use tracing::{info, warn};

use super::Runtime;
use crate::error::ServerError;

impl Runtime {
    pub async fn pull_image(
        &self,
        req: PullImageRequest,
    ) -> Result<PullImageResponse, ServerError> {
        let reference = req.image.map(|i| i.image).unwrap_or_default();
        if reference.is_empty() {
            return Err(ServerError::InvalidArgument(
                "PullImage needs image.image".into(),
            ));
        }
        let auth = req.auth.map(registry_auth).transpose()?.flatten();
        let image =
            self.images
                .pull(&reference, auth)
                .await
                .map_err(|source| ServerError::Image {
                    op: format!("pulling image {reference}"),
                    source,
                })?;
        self.precompile_pulled(&image).await;
        Ok(PullImageResponse {
            image_ref: image.id,
        })
    }

    /// See the module docs.
    async fn precompile_pulled(&self, image: &Image) {
        let started = Instant::now();
        match self.images.precompile(image).await {
            Ok(0) => {}
            Ok(artifacts) => info!(image_id = %image.id, artifacts,
                millis = started.elapsed().as_millis() as u64, "image precompiled"),
            Err(error) => warn!(image_id = %image.id, %error,
                "cannot precompile the image; pod processes will compile its Wasm"),
        }
    }
}

/// CRI AuthConfig → registry credentials; `None` when it holds none.
fn registry_auth(a: AuthConfig) -> Result<Option<imageservice::RegistryAuth>, ServerError> {
    if !a.username.is_empty() {
        return Ok(Some(imageservice::RegistryAuth::basic(
            a.username, a.password,
        )));
    }
    if !a.password.is_empty() {
        return Err(ServerError::InvalidArgument(
            "auth.password was given without auth.username".into(),
        ));
    }
    if !a.auth.is_empty() {
        return imageservice::RegistryAuth::from_base64(&a.auth)
            .map(Some)
            .map_err(|e| ServerError::InvalidArgument(format!("auth.auth: {e}")));
    }
    if !a.registry_token.is_empty() {
        return Ok(Some(imageservice::RegistryAuth::Bearer {
            token: a.registry_token,
        }));
    }
    if !a.identity_token.is_empty() {
        // An OAuth2 refresh token needs the registry's token exchange, which the registry client
        // does not do; saying so beats a confusing anonymous 401.
        return Err(ServerError::InvalidArgument(
            "auth.identity_token (an OAuth2 refresh token) is not supported: give username/password, auth or registry_token".into(),
        ));
    }
    Ok(None)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use imageservice::RegistryAuth;

    #[test]
    fn every_credential_form() {
        let auth = |a: AuthConfig| registry_auth(a).unwrap();
        assert_eq!(
            auth(AuthConfig {
                username: "u".into(),
                password: "p".into(),
                auth: "ignored".into(),
                ..Default::default()
            }),
            Some(RegistryAuth::basic("u", "p"))
        );
        assert_eq!(
            auth(AuthConfig {
                auth: "dXNlcjpwYXNz".into(), // user:pass
                ..Default::default()
            }),
            Some(RegistryAuth::basic("user", "pass"))
        );
        assert_eq!(
            auth(AuthConfig {
                auth: "dXNlcjpwYXNzOndvcmQ=".into(), // user:pass:word, padded
                ..Default::default()
            }),
            Some(RegistryAuth::basic("user", "pass:word"))
        );
        assert_eq!(
            auth(AuthConfig {
                registry_token: "tok".into(),
                ..Default::default()
            }),
            Some(RegistryAuth::Bearer {
                token: "tok".into()
            })
        );
        assert_eq!(auth(AuthConfig::default()), None);
    }

    #[test]
    fn unusable_credentials_are_invalid_arguments() {
        for a in [
            AuthConfig {
                auth: "not base64!".into(),
                ..Default::default()
            },
            AuthConfig {
                auth: "bm9jb2xvbg==".into(), // "nocolon"
                ..Default::default()
            },
            AuthConfig {
                password: "p".into(),
                ..Default::default()
            },
            AuthConfig {
                identity_token: "refresh".into(),
                ..Default::default()
            },
        ] {
            assert!(matches!(
                registry_auth(a),
                Err(ServerError::InvalidArgument(_))
            ));
        }
    }
}
