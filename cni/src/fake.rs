//! A [`NetworkBackend`] for tests of the code above this crate: it hands out addresses from a counter,
//! records every call, and fails on request, without touching the system.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;

use crate::backend::{Attachment, BoxFuture, NetworkBackend, NetworkStatus, PodNetwork};
use crate::error::NetError;

/// What the fake was asked to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Attach(String),
    Detach(String),
}

#[derive(Debug, Default)]
pub struct FakeBackend {
    calls: Mutex<Vec<Call>>,
    /// When set, `attach` fails with a plugin error carrying this message.
    pub fail_attach: Mutex<Option<String>>,
}

impl FakeBackend {
    pub fn new() -> FakeBackend {
        FakeBackend::default()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn record(&self, call: Call) -> usize {
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        calls.push(call);
        calls.len()
    }
}

impl NetworkBackend for FakeBackend {
    fn status(&self) -> NetworkStatus {
        NetworkStatus::ready()
    }

    fn attach<'a>(
        &'a self,
        pod: &'a PodNetwork,
    ) -> BoxFuture<'a, Result<Option<Attachment>, NetError>> {
        Box::pin(async move {
            let n = self.record(Call::Attach(pod.pod_id.clone()));
            if let Some(msg) = self
                .fail_attach
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
            {
                return Err(NetError::PluginFailed {
                    plugin: "fake".into(),
                    command: "ADD",
                    code: 11,
                    msg,
                    details: String::new(),
                });
            }
            let last = u8::try_from(n % 250).unwrap_or(0) + 2;
            Ok(Some(Attachment {
                backend: "fake".into(),
                ips: vec![
                    IpAddr::V4(Ipv4Addr::new(10, 99, 0, last)),
                    IpAddr::V6(
                        format!("fd00:99::{last:x}")
                            .parse()
                            .unwrap_or(std::net::Ipv6Addr::LOCALHOST),
                    ),
                ],
                cni: None,
                native: None,
            }))
        })
    }

    fn detach<'a>(&'a self, attachment: &'a Attachment) -> BoxFuture<'a, Result<(), NetError>> {
        Box::pin(async move {
            let first = attachment
                .pod_ip()
                .map(|ip| ip.to_string())
                .unwrap_or_default();
            self.record(Call::Detach(first));
            Ok(())
        })
    }
}
