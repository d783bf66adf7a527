//! CRI `PullImage`: the image id (config digest) is the `image_ref` returned.

use proto::cri::{AuthConfig, PullImageRequest, PullImageResponse};

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
        let auth = req.auth.and_then(registry_auth);
        let image =
            self.images
                .pull(&reference, auth)
                .await
                .map_err(|source| ServerError::Image {
                    op: format!("pulling image {reference}"),
                    source,
                })?;
        Ok(PullImageResponse {
            image_ref: image.id,
        })
    }
}

/// CRI AuthConfig → registry credentials: explicit username/password, or `auth` (base64 of "user:password").
fn registry_auth(a: AuthConfig) -> Option<imageservice::RegistryAuth> {
    if !a.username.is_empty() {
        return Some(imageservice::RegistryAuth {
            username: a.username,
            password: a.password,
        });
    }
    let decoded = base64_decode(&a.auth)?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some(imageservice::RegistryAuth {
        username: user.to_string(),
        password: pass.to_string(),
    })
}

/// Standard base64 (with or without padding); `None` on anything else.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| *c != b'=').collect();
    if bytes.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= val(*c)? << (18 - 6 * i);
        }
        out.push((n >> 16) as u8);
        if chunk.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(n as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn auth_field_is_decoded() {
        let a = AuthConfig {
            auth: "dXNlcjpwYXNz".into(), // user:pass
            ..Default::default()
        };
        let r = registry_auth(a).unwrap();
        assert_eq!((r.username.as_str(), r.password.as_str()), ("user", "pass"));
        assert!(registry_auth(AuthConfig::default()).is_none());
        assert_eq!(base64_decode("YQ==").unwrap(), b"a");
    }
}
