//! Whether the kernel's OOM killer killed something in a container's cgroup,
//! read from the memory controller before the cgroup is removed (v1:
//! `memory.oom_control`, v2: `memory.events`).

use std::path::Path;

/// `cgroups_path` is the spec's `linux.cgroupsPath` (e.g. `/isola/<id>`).
pub fn was_oom_killed(cgroups_path: &str) -> bool {
    let relative = cgroups_path.trim_start_matches('/');
    let candidates = [
        Path::new("/sys/fs/cgroup/memory")
            .join(relative)
            .join("memory.oom_control"),
        Path::new("/sys/fs/cgroup")
            .join(relative)
            .join("memory.events"),
    ];
    candidates.iter().any(|file| {
        std::fs::read_to_string(file).is_ok_and(|text| {
            text.lines().any(|line| {
                let mut words = line.split_whitespace();
                words.next() == Some("oom_kill")
                    && words
                        .next()
                        .and_then(|n| n.parse::<u64>().ok())
                        .is_some_and(|n| n > 0)
            })
        })
    })
}
