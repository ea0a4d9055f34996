//! The small files docker bind-mounts over the image's own: /etc/hostname,
//! /etc/hosts and /etc/resolv.conf, written per container so the image
//! itself is never modified.

use std::fs;
use std::path::Path;

use super::options::Network;

/// Writes `hostname`, `hosts` and `resolv.conf` into `dir`.
pub fn write_etc_files(dir: &Path, hostname: &str, network: Network) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    fs::write(dir.join("hostname"), format!("{hostname}\n"))?;
    let hosts = match network {
        Network::Host => fs::read_to_string("/etc/hosts").unwrap_or_default(),
        Network::None => String::new(),
    };
    let mut hosts_file =
        String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    hosts_file.push_str(&format!("127.0.1.1\t{hostname}\n"));
    if network == Network::Host {
        hosts_file.push_str(&hosts);
    }
    fs::write(dir.join("hosts"), hosts_file)?;
    // Without a network there is nobody to ask; with the host's, use its resolvers.
    let resolv = match network {
        Network::Host => fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        Network::None => String::new(),
    };
    fs::write(dir.join("resolv.conf"), resolv)
}
