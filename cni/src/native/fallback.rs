//! [`CniOrNative`]: the backend the daemon uses. A CNI config, when one exists, wins (it is read again on
//! every use, as [`CniBackend`] does); without one, the native backend gives pods their network if it is
//! enabled. Detach goes to the backend that made the attachment, whatever the config says now.

use crate::backend::{Attachment, BoxFuture, NetworkBackend, NetworkStatus, PodNetwork};
use crate::error::NetError;
use crate::plugin::backend::CniBackend;

use super::{BACKEND_NAME, NativeBackend, NativeError};

/// CNI first, the native backend otherwise.
#[derive(Debug)]
pub struct CniOrNative {
    cni: CniBackend,
    native: NativeBackend,
}

impl CniOrNative {
    pub fn new(cni: CniBackend, native: NativeBackend) -> CniOrNative {
        CniOrNative { cni, native }
    }

    pub fn native(&self) -> &NativeBackend {
        &self.native
    }

    async fn attach_pod(&self, pod: &PodNetwork) -> Result<Option<Attachment>, NetError> {
        // CniBackend answers None exactly when there is no CNI config.
        if pod.tap && (self.cni.status().ready || !self.native.options().enabled) {
            return Err(NativeError::TapNeedsNative.into());
        }
        match self.cni.attach(pod).await? {
            Some(att) => Ok(Some(att)),
            None => self.native.attach(pod).await,
        }
    }
}

impl NetworkBackend for CniOrNative {
    fn status(&self) -> NetworkStatus {
        let cni = self.cni.status();
        if cni.ready {
            return cni;
        }
        let native = self.native.status();
        // Neither: CNI's reason and message, which say what to install.
        if native.ready { native } else { cni }
    }

    fn attach<'a>(
        &'a self,
        pod: &'a PodNetwork,
    ) -> BoxFuture<'a, Result<Option<Attachment>, NetError>> {
        Box::pin(self.attach_pod(pod))
    }

    fn detach<'a>(&'a self, attachment: &'a Attachment) -> BoxFuture<'a, Result<(), NetError>> {
        if attachment.backend == BACKEND_NAME {
            self.native.detach(attachment)
        } else {
            self.cni.detach(attachment)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::CniOptions;
    use crate::native::NativeOptions;

    fn backend(dir: &std::path::Path, enabled: bool) -> CniOrNative {
        CniOrNative::new(
            CniBackend::new(CniOptions {
                conf_dir: dir.join("net.d"),
                ..CniOptions::default()
            }),
            NativeBackend::new(NativeOptions {
                enabled,
                ipam_file: dir.join("ipam.json"),
                ..NativeOptions::default()
            }),
        )
    }

    #[tokio::test]
    async fn status_prefers_cni_then_native_and_keeps_cni_wording_when_neither() {
        let dir = tempfile::tempdir().unwrap();
        assert!(backend(dir.path(), true).status().ready);
        let off = backend(dir.path(), false);
        let status = off.status();
        assert!(!status.ready);
        assert_eq!(status.reason, "NetworkPluginNotReady");
        assert!(
            status.message.contains("cni plugin not initialized"),
            "{}",
            status.message
        );
        // Disabled and no CNI config: loopback only, and no TAP mode.
        assert_eq!(off.attach(&PodNetwork::default()).await.unwrap(), None);
        let tap = PodNetwork {
            tap: true,
            ..PodNetwork::default()
        };
        assert!(off.attach(&tap).await.is_err());

        // With a CNI config, CNI wins and TAP mode is refused with a message that says why.
        std::fs::create_dir_all(dir.path().join("net.d")).unwrap();
        std::fs::write(
            dir.path().join("net.d/10-x.conflist"),
            r#"{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"bridge"}]}"#,
        )
        .unwrap();
        let on = backend(dir.path(), true);
        assert!(on.status().ready);
        let err = on.attach(&tap).await.unwrap_err();
        assert!(
            crate::error::chain(&err).contains("needs the native backend"),
            "{err}"
        );
    }
}
