//! `features`: what this runtime supports, in the runtime-spec's
//! features.json shape.

use anyhow::Result;
use isola_container::oci_spec::runtime::{
    ApparmorBuilder, CgroupBuilder, FeaturesBuilder, LinuxFeatureBuilder, LinuxNamespaceType,
    SeccompBuilder, SelinuxBuilder, VERSION,
};

pub fn features() -> Result<i32> {
    let namespaces = vec![
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Network,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::User,
        LinuxNamespaceType::Cgroup,
    ];
    let linux = LinuxFeatureBuilder::default()
        .namespaces(namespaces)
        .cgroup(
            CgroupBuilder::default()
                .v1(true)
                .v2(true)
                .systemd(false)
                .systemd_user(false)
                .rdma(false)
                .build()?,
        )
        .seccomp(SeccompBuilder::default().enabled(true).build()?)
        .apparmor(ApparmorBuilder::default().enabled(false).build()?)
        .selinux(SelinuxBuilder::default().enabled(false).build()?)
        .build()?;
    let hooks = [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ];
    let features = FeaturesBuilder::default()
        .oci_version_min("1.0.0".to_owned())
        .oci_version_max(VERSION.to_owned())
        .hooks(hooks.iter().map(|h| h.to_string()).collect::<Vec<_>>())
        .linux(linux)
        .annotations(
            [(
                isola_container::isolation::ANNOTATION.to_owned(),
                "process".to_owned(),
            )]
            .into_iter()
            .collect::<std::collections::HashMap<_, _>>(),
        )
        .build()?;
    println!("{}", serde_json::to_string_pretty(&features)?);
    Ok(0)
}
