//! `isola stats`: each running container's CPU, memory and process count,
//! from its own cgroup (the host's, or its guest's at the vm level), in
//! docker's columns. CPU % is over the interval between two samples.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::{Args, ValueEnum};
use isola_host::Host;
use serde_json::{json, Value};

/// Between two samples: the CPU % window, and the streaming period.
const INTERVAL: Duration = Duration::from_secs(1);

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// Print one sample (two readings, for CPU %) and exit, instead of a
    /// new one every second.
    #[arg(long)]
    no_stream: bool,
    /// `table` (docker's columns), or `json`: one object per container per
    /// sample, with the runner's whole figures under `Stats`.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    #[arg(required = true)]
    containers: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
}

/// One reading of one container.
struct Reading {
    at: Instant,
    stats: Value,
}

pub fn run(host: &Host, args: StatsArgs) -> Result<i32> {
    let mut ids = Vec::new();
    for reference in &args.containers {
        let id = host.resolve(reference)?;
        let name = host.record(&id)?.name;
        ids.push((id, name));
    }
    let mut last: HashMap<String, Reading> = HashMap::new();
    let read = |last: &mut HashMap<String, Reading>| -> Result<Vec<Value>> {
        let mut rows = Vec::new();
        for (id, name) in &ids {
            let stats = host.stats(id)?;
            let now = Reading {
                at: Instant::now(),
                stats,
            };
            rows.push(row(id.as_str(), name, last.get(id.as_str()), &now));
            last.insert(id.as_str().to_owned(), now);
        }
        Ok(rows)
    };
    // The first reading only starts the CPU window.
    read(&mut last)?;
    loop {
        std::thread::sleep(INTERVAL);
        let rows = read(&mut last)?;
        print(&rows, args.format);
        if args.no_stream {
            return Ok(0);
        }
    }
}

/// docker's figures for one container: CPU % of one CPU over the window
/// since `before`, memory in use (without the inactive page cache, as
/// docker) against the limit, and the number of processes.
fn row(id: &str, name: &str, before: Option<&Reading>, now: &Reading) -> Value {
    let cpu_ns = |s: &Value| s["cpu"]["usage"]["usage_total"].as_u64().unwrap_or(0);
    let cpu = before.map(|b| {
        let used = cpu_ns(&now.stats).saturating_sub(cpu_ns(&b.stats)) as f64;
        let wall = now.at.duration_since(b.at).as_nanos().max(1) as f64;
        100.0 * used / wall
    });
    let memory = &now.stats["memory"];
    let usage = memory["memory"]["usage"].as_u64().unwrap_or(0);
    // v2's memory.stat says inactive_file, v1's total_inactive_file.
    let inactive = ["inactive_file", "total_inactive_file"]
        .iter()
        .find_map(|k| memory["stats"][k].as_u64())
        .unwrap_or(0);
    let used = usage.saturating_sub(inactive);
    // "max" (no limit) reads as u64::MAX on v2 and near i64::MAX on v1.
    let limit = memory["memory"]["limit"].as_u64().filter(|l| *l < 1 << 62);
    json!({
        "ID": &id[..12.min(id.len())],
        "Name": name,
        "CPUPerc": cpu,
        "MemUsage": used,
        "MemLimit": limit,
        "MemPerc": limit.map(|l| 100.0 * used as f64 / l.max(1) as f64),
        "PIDs": now.stats["pids"]["current"].as_u64().unwrap_or(0),
        "Stats": now.stats,
    })
}

fn print(rows: &[Value], format: Format) {
    if format == Format::Json {
        for r in rows {
            println!("{r}");
        }
        return;
    }
    println!(
        "{:<14}{:<20}{:<9}{:<24}{:<9}PIDS",
        "CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %"
    );
    for r in rows {
        let percent = |v: &Value| v.as_f64().map_or("--".into(), |p| format!("{p:.2}%"));
        let limit = r["MemLimit"].as_u64().map_or("unlimited".into(), bytes);
        println!(
            "{:<14}{:<20}{:<9}{:<24}{:<9}{}",
            r["ID"].as_str().unwrap_or(""),
            r["Name"].as_str().unwrap_or(""),
            percent(&r["CPUPerc"]),
            format!("{} / {limit}", bytes(r["MemUsage"].as_u64().unwrap_or(0))),
            percent(&r["MemPerc"]),
            r["PIDs"],
        );
    }
}

/// Bytes as docker prints them: 1.5MiB, 64MiB, 2GiB.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if v.fract() == 0.0 {
        format!("{v:.0}{}", UNITS[unit])
    } else {
        format!("{v:.2}{}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_docker_prints_them() {
        assert_eq!(bytes(512), "512B");
        assert_eq!(bytes(64 << 20), "64MiB");
        assert_eq!(bytes(1536 * 1024), "1.50MiB");
        assert_eq!(bytes(3 << 30), "3GiB");
    }

    #[test]
    fn cpu_percent_is_over_the_window_and_memory_leaves_out_inactive_cache() {
        let t0 = Instant::now();
        let sample = |cpu_ns: u64| {
            json!({
                "cpu": {"usage": {"usage_total": cpu_ns}},
                "memory": {"memory": {"usage": 10u64 << 20, "limit": 40u64 << 20},
                           "stats": {"inactive_file": 2u64 << 20}},
                "pids": {"current": 3},
            })
        };
        let before = Reading {
            at: t0,
            stats: sample(1_000_000_000),
        };
        let now = Reading {
            at: t0 + Duration::from_secs(2),
            stats: sample(1_500_000_000),
        };
        let r = row("0123456789abcdef", "web", Some(&before), &now);
        assert_eq!(r["ID"], "0123456789ab");
        assert!((r["CPUPerc"].as_f64().unwrap() - 25.0).abs() < 1e-9);
        assert_eq!(r["MemUsage"], 8u64 << 20);
        assert_eq!(r["MemLimit"], 40u64 << 20);
        assert!((r["MemPerc"].as_f64().unwrap() - 20.0).abs() < 1e-9);
        assert_eq!(r["PIDs"], 3);
        // No earlier reading: no CPU figure; no limit: none invented.
        let mut unlimited = sample(0);
        unlimited["memory"]["memory"]["limit"] = json!(u64::MAX);
        let r = row(
            "ab",
            "x",
            None,
            &Reading {
                at: t0,
                stats: unlimited,
            },
        );
        assert!(r["CPUPerc"].is_null() && r["MemLimit"].is_null());
    }
}
