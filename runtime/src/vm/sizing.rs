//! How big a container's VM is: the memory limit plus what the guest
//! kernel, agent and runner need for themselves, and enough vCPUs for the
//! CPU quota. The same limits are also in the config.json, so the guest's
//! cgroups enforce them exactly as the process level does.

use oci_spec::runtime::Spec;

/// Guest memory without a limit (docker's default is "the host's").
pub const DEFAULT_MEM_MIB: u64 = 512;
/// Room for the guest kernel, the initramfs (agent and runner), the page
/// cache of the image and the writable layer's metadata, on top of a
/// container's memory limit.
pub const OVERHEAD_MIB: u64 = 96;
pub const DEFAULT_VCPUS: u8 = 1;
/// A guest never gets more vCPUs than the host has.
pub const MAX_VCPUS: u8 = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmSize {
    pub mem_mib: u64,
    pub vcpus: u8,
}

impl VmSize {
    pub fn for_spec(spec: &Spec) -> VmSize {
        let resources = spec.linux().as_ref().and_then(|l| l.resources().clone());
        let limit = resources
            .as_ref()
            .and_then(|r| r.memory().as_ref())
            .and_then(|m| m.limit())
            .filter(|l| *l > 0)
            .map(|l| (l as u64).div_ceil(1 << 20));
        let mem_mib = match limit {
            Some(l) => l + OVERHEAD_MIB,
            None => DEFAULT_MEM_MIB,
        };
        let cpu = resources.as_ref().and_then(|r| r.cpu().as_ref());
        let quota = cpu.and_then(|c| c.quota()).filter(|q| *q > 0);
        let period = cpu
            .and_then(|c| c.period())
            .filter(|p| *p > 0)
            .unwrap_or(100_000);
        let host_cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(MAX_VCPUS as usize) as u64;
        let vcpus = match quota {
            Some(q) => (q as u64).div_ceil(period).clamp(1, host_cpus) as u8,
            None => DEFAULT_VCPUS,
        };
        VmSize { mem_mib, vcpus }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> Spec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn limits_size_the_vm() {
        let s = spec(serde_json::json!({
            "ociVersion": "1.0.2",
            "linux": {"resources": {"memory": {"limit": 64 * 1024 * 1024},
                                    "cpu": {"quota": 150000, "period": 100000}}}
        }));
        let size = VmSize::for_spec(&s);
        assert_eq!(size.mem_mib, 64 + OVERHEAD_MIB);
        let host = std::thread::available_parallelism().unwrap().get() as u8;
        assert_eq!(size.vcpus, 2.min(host));
    }

    #[test]
    fn no_limits_get_the_defaults() {
        let s = spec(serde_json::json!({"ociVersion": "1.0.2"}));
        assert_eq!(
            VmSize::for_spec(&s),
            VmSize {
                mem_mib: DEFAULT_MEM_MIB,
                vcpus: DEFAULT_VCPUS
            }
        );
    }
}
