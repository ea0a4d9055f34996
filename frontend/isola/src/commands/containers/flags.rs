//! Parsing docker's flag values.

use anyhow::{bail, Context, Result};

/// `--memory 64m`: bytes, with b/k/m/g suffixes (docker's units, 1024-based).
pub fn parse_memory(s: &str) -> Result<i64> {
    let s = s.trim().to_ascii_lowercase();
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s.as_str(), ""),
    };
    let value: f64 = digits
        .parse()
        .with_context(|| format!("invalid memory size {s:?}"))?;
    let scale: f64 = match unit.trim_end_matches('b') {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        _ => bail!("invalid memory size {s:?}: use a number with b, k, m or g"),
    };
    let bytes = value * scale;
    if !(bytes.is_finite() && bytes >= 1.0 && bytes < i64::MAX as f64) {
        bail!("invalid memory size {s:?}");
    }
    Ok(bytes as i64)
}

/// `-e KEY=VAL` as is; `-e KEY` takes KEY from isola's own environment
/// (and is dropped if unset), as docker does.
pub fn expand_env(vars: &[String]) -> Vec<String> {
    vars.iter()
        .filter_map(|v| {
            if v.contains('=') {
                Some(v.clone())
            } else {
                std::env::var(v).ok().map(|val| format!("{v}={val}"))
            }
        })
        .collect()
}

/// `--env-file`: one variable per line; blank lines and `#` comments skipped.
pub fn read_env_file(path: &str) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading env file {path}"))?;
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    Ok(expand_env(&lines))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_units() {
        assert_eq!(parse_memory("64m").unwrap(), 64 << 20);
        assert_eq!(parse_memory("1g").unwrap(), 1 << 30);
        assert_eq!(parse_memory("512k").unwrap(), 512 << 10);
        assert_eq!(parse_memory("100mb").unwrap(), 100 << 20);
        assert_eq!(parse_memory("4096").unwrap(), 4096);
        for bad in ["", "m", "12x", "-5m", "1.5.5g"] {
            assert!(parse_memory(bad).is_err(), "{bad}");
        }
    }
}
