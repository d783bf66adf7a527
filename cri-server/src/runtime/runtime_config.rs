//! CRI `RuntimeConfig`: the cgroup driver the kubelet must agree with.

use proto::cri::{
    CgroupDriver, LinuxRuntimeConfiguration, RuntimeConfigRequest, RuntimeConfigResponse,
};

use super::Runtime;
use crate::config;

impl Runtime {
    pub fn runtime_config(&self, _req: RuntimeConfigRequest) -> RuntimeConfigResponse {
        let driver = match self.config.cgroup_driver {
            config::CgroupDriver::Cgroupfs => CgroupDriver::Cgroupfs,
            config::CgroupDriver::Systemd => CgroupDriver::Systemd,
        };
        RuntimeConfigResponse {
            linux: Some(LinuxRuntimeConfiguration {
                cgroup_driver: driver as i32,
            }),
        }
    }
}
