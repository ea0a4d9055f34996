//! The run spec: what the outer guest's init should run, and where. The host renders it as
//! a small shell file (every value single-quoted) that QEMU hands to the guest through
//! fw_cfg and the init script sources; the init script itself stays the same for every run,
//! so the initramfs can be cached.
//!
//! The command runs as `chroot /newroot /usr/bin/env -i -C CWD -- ENV... CMD ARGS...`, so the
//! spec ends with `set -- ENV... CMD ARGS...`.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Variables passed through from the caller's environment besides the `ISOLA_*` ones.
pub const PASSTHROUGH_ENV: &[&str] = &["RUST_LOG", "RUST_BACKTRACE"];

/// Set in the command's environment so tests know they run in the test host.
pub const IN_TESTHOST_ENV: &str = "ISOLA_IN_TESTHOST";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("no command given")]
    NoCommand,
    #[error("the command name {0:?} contains '=', which env(1) would take for a variable")]
    CommandWithEquals(String),
    #[error("{0:?} is not a valid environment variable name")]
    BadEnvName(String),
    #[error("{what} contains a NUL byte")]
    Nul { what: String },
    #[error("{0} is not an absolute path")]
    RelativePath(PathBuf),
    #[error("share tag {0:?} must be 1-31 characters of [a-z0-9]")]
    BadTag(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Run the command with stdout/stderr on their own ports, stdin from /dev/null.
    Command,
    /// Run it on the serial console, as the session leader with a controlling terminal.
    Shell,
}

/// A read-write 9p share mounted at the same path as on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub tag: String,
    pub path: PathBuf,
}

#[derive(Debug, Clone)]
pub struct RunSpec {
    pub mode: Mode,
    pub cwd: PathBuf,
    /// The command's whole environment, in order.
    pub env: Vec<(String, OsString)>,
    pub argv: Vec<OsString>,
    /// Mounted in this order (parents before children).
    pub shares: Vec<Share>,
    /// Bind the kernel's module tree (first) over the host's `/lib/modules` (second).
    pub modules_bind: Option<(PathBuf, PathBuf)>,
    pub heartbeat_secs: u32,
    pub msize: u32,
}

/// Single-quotes `s` for a POSIX shell.
pub fn sh_quote(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 2);
    out.push(b'\'');
    for &b in s {
        if b == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
    out
}

pub fn valid_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// The caller's variables that go through: [`PASSTHROUGH_ENV`] and everything starting with
/// `ISOLA_` (except [`IN_TESTHOST_ENV`], which the test host sets itself), sorted by name.
pub fn select_env<I>(vars: I) -> Vec<(String, OsString)>
where
    I: IntoIterator<Item = (OsString, OsString)>,
{
    let mut out: Vec<(String, OsString)> = vars
        .into_iter()
        .filter_map(|(k, v)| {
            let k = k.into_string().ok()?;
            let wanted = PASSTHROUGH_ENV.contains(&k.as_str())
                || (k.starts_with("ISOLA_") && k != IN_TESTHOST_ENV);
            (wanted && valid_env_name(&k)).then_some((k, v))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn no_nul(what: &str, s: &OsStr) -> Result<(), SpecError> {
    if s.as_bytes().contains(&0) {
        return Err(SpecError::Nul {
            what: what.to_owned(),
        });
    }
    Ok(())
}

fn abs_path(p: &Path) -> Result<&[u8], SpecError> {
    if !p.is_absolute() {
        return Err(SpecError::RelativePath(p.to_path_buf()));
    }
    no_nul(&p.display().to_string(), p.as_os_str())?;
    Ok(p.as_os_str().as_bytes())
}

impl RunSpec {
    /// The shell file the guest's init sources.
    pub fn render(&self) -> Result<Vec<u8>, SpecError> {
        let first = self.argv.first().ok_or(SpecError::NoCommand)?;
        if first.as_bytes().contains(&b'=') {
            return Err(SpecError::CommandWithEquals(
                first.to_string_lossy().into_owned(),
            ));
        }
        let mut s = b"# isola-testhost run spec (generated)\n".to_vec();
        let assign = |s: &mut Vec<u8>, name: &str, value: &[u8]| {
            s.extend_from_slice(name.as_bytes());
            s.push(b'=');
            s.extend_from_slice(&sh_quote(value));
            s.push(b'\n');
        };
        let mode: &[u8] = match self.mode {
            Mode::Command => b"command",
            Mode::Shell => b"shell",
        };
        assign(&mut s, "th_mode", mode);
        assign(&mut s, "th_cwd", abs_path(&self.cwd)?);
        assign(
            &mut s,
            "th_heartbeat",
            self.heartbeat_secs.to_string().as_bytes(),
        );
        assign(&mut s, "th_msize", self.msize.to_string().as_bytes());
        if let Some((src, dst)) = &self.modules_bind {
            assign(&mut s, "th_modules_src", abs_path(src)?);
            assign(&mut s, "th_modules_dst", abs_path(dst)?);
        }
        let mut tags = Vec::new();
        for share in &self.shares {
            let ok = (1..=31).contains(&share.tag.len())
                && share
                    .tag
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
            if !ok {
                return Err(SpecError::BadTag(share.tag.clone()));
            }
            assign(
                &mut s,
                &format!("th_share_{}", share.tag),
                abs_path(&share.path)?,
            );
            tags.push(share.tag.as_str());
        }
        assign(&mut s, "th_shares", tags.join(" ").as_bytes());

        s.extend_from_slice(b"set --");
        for (name, value) in &self.env {
            if !valid_env_name(name) {
                return Err(SpecError::BadEnvName(name.clone()));
            }
            no_nul(name, value)?;
            let mut kv = format!("{name}=").into_bytes();
            kv.extend_from_slice(value.as_bytes());
            s.extend_from_slice(b" \\\n  ");
            s.extend_from_slice(&sh_quote(&kv));
        }
        for arg in &self.argv {
            no_nul("an argument", arg)?;
            s.extend_from_slice(b" \\\n  ");
            s.extend_from_slice(&sh_quote(arg.as_bytes()));
        }
        s.push(b'\n');
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn spec(argv: &[&str]) -> RunSpec {
        RunSpec {
            mode: Mode::Command,
            cwd: "/work/main".into(),
            env: vec![
                ("PATH".into(), "/a:/b".into()),
                ("ISOLA_X".into(), "it's \"quoted\" $HOME `x`\nline2".into()),
            ],
            argv: argv.iter().map(OsString::from).collect(),
            shares: vec![Share {
                tag: "share0".into(),
                path: "/work/main".into(),
            }],
            modules_bind: Some(("/c/lib/modules/6.1".into(), "/usr/lib/modules".into())),
            heartbeat_secs: 1,
            msize: 512000,
        }
    }

    #[test]
    fn quoting_survives_a_real_shell() {
        let rendered = spec(&["sh", "-c", "echo 'a b' \"$0\"", "it's", "", "*"])
            .render()
            .unwrap();
        // Source the spec in sh and print every variable and positional parameter.
        let script = [
            rendered.as_slice(),
            b"printf '<%s>' \"$th_mode\" \"$th_cwd\" \"$th_shares\" \"$th_share_share0\" \"$th_modules_dst\"; printf '[%s]' \"$@\"",
        ]
        .concat();
        let out = Command::new("sh")
            .arg("-c")
            .arg(OsStr::from_bytes(&script))
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            "<command></work/main><share0></work/main></usr/lib/modules>\
             [PATH=/a:/b][ISOLA_X=it's \"quoted\" $HOME `x`\nline2]\
             [sh][-c][echo 'a b' \"$0\"][it's][][*]"
        );
    }

    #[test]
    fn sh_quote_handles_quotes() {
        assert_eq!(sh_quote(b"a'b"), b"'a'\\''b'");
        assert_eq!(sh_quote(b""), b"''");
    }

    #[test]
    fn invalid_specs_are_refused() {
        assert_eq!(spec(&[]).render().unwrap_err(), SpecError::NoCommand);
        assert!(matches!(
            spec(&["A=b", "x"]).render(),
            Err(SpecError::CommandWithEquals(_))
        ));
        let mut s = spec(&["true"]);
        s.env.push(("1BAD".into(), "x".into()));
        assert_eq!(
            s.render().unwrap_err(),
            SpecError::BadEnvName("1BAD".into())
        );
        let mut s = spec(&["true"]);
        s.shares[0].tag = "Bad-Tag".into();
        assert!(matches!(s.render(), Err(SpecError::BadTag(_))));
        let mut s = spec(&["true"]);
        s.cwd = "relative".into();
        assert!(matches!(s.render(), Err(SpecError::RelativePath(_))));
        assert!(matches!(
            spec(&["echo", "a\0b"]).render(),
            Err(SpecError::Nul { .. })
        ));
    }

    #[test]
    fn env_selection() {
        let vars = [
            ("RUST_LOG", "debug"),
            ("HOME", "/root"),
            ("ISOLA_CACHE", "/c"),
            ("ISOLA_IN_TESTHOST", "0"),
            ("RUST_BACKTRACE", "1"),
            ("ISOLA_bad-name", "x"),
            ("CARGO", "x"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let names: Vec<String> = select_env(vars).into_iter().map(|(k, _)| k).collect();
        assert_eq!(names, ["ISOLA_CACHE", "RUST_BACKTRACE", "RUST_LOG"]);
    }
}
