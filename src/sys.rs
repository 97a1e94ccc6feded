//! What this process can learn of the machine it runs on: the memory it can still get
//! (the host's `MemAvailable`, or a cgroup's limit), the memory it holds, and sizes in
//! bytes as people read them. The bottom layer: it imports nothing of the crate.

use std::fs;

/// Memory this process can still get on the host, and what limits it.
#[derive(Clone, Debug, PartialEq)]
pub struct HostMemory {
    pub available: u64,
    pub limited_by: String,
}

/// `MemAvailable` of a /proc/meminfo text, in bytes.
pub fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// What a cgroup's limit leaves: `limit - usage`; None when there is no limit
/// (cgroup v2 writes "max"; v1 a number near 2^63).
pub fn cgroup_room(limit: &str, usage: &str) -> Option<u64> {
    let limit: u64 = limit.trim().parse().ok()?;
    let usage: u64 = usage.trim().parse().ok()?;
    (limit < 1 << 60).then(|| limit.saturating_sub(usage))
}

/// The cgroup this process is in: (memory limit, usage) file pairs to try, v2 first.
fn cgroup_files() -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Ok(text) = fs::read_to_string("/proc/self/cgroup") {
        for line in text.lines() {
            if let Some(path) = line.strip_prefix("0::") {
                let dir = format!("/sys/fs/cgroup{}", path.trim_end_matches('/'));
                out.push((format!("{dir}/memory.max"), format!("{dir}/memory.current")));
            }
        }
    }
    out.push((
        "/sys/fs/cgroup/memory.max".to_string(),
        "/sys/fs/cgroup/memory.current".to_string(),
    ));
    out.push((
        "/sys/fs/cgroup/memory/memory.limit_in_bytes".to_string(),
        "/sys/fs/cgroup/memory/memory.usage_in_bytes".to_string(),
    ));
    out
}

/// The host's `MemAvailable`, or less when this process's cgroup allows less.
/// None when /proc/meminfo cannot be read (not Linux): nothing is checked then.
pub fn host_memory() -> Option<HostMemory> {
    let meminfo = fs::read_to_string("/proc/meminfo").ok()?;
    let mut best = HostMemory {
        available: parse_meminfo(&meminfo)?,
        limited_by: "MemAvailable in /proc/meminfo".to_string(),
    };
    let room = cgroup_files().into_iter().find_map(|(limit, usage)| {
        let room = cgroup_room(
            &fs::read_to_string(&limit).ok()?,
            &fs::read_to_string(usage).ok()?,
        )?;
        Some((room, limit))
    });
    if let Some((room, limit)) = room {
        if room < best.available {
            best = HostMemory {
                available: room,
                limited_by: format!("the cgroup limit in {limit}"),
            };
        }
    }
    Some(best)
}

/// This process's resident memory now (VmRSS), which the estimate already includes.
pub fn resident() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|t| {
            let line = t.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024)
}

/// Bytes as people read them.
pub fn human(bytes: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    if bytes as f64 >= GIB {
        format!("{:.1} GiB", bytes as f64 / GIB)
    } else {
        format!("{:.0} MiB", (bytes as f64 / MIB).ceil())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_and_cgroup_texts() {
        let meminfo =
            "MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(parse_meminfo(meminfo), Some(20_000_000 * 1024));
        assert_eq!(parse_meminfo("MemTotal: 5 kB\n"), None);
        assert_eq!(cgroup_room("max\n", "12345\n"), None);
        assert_eq!(cgroup_room("9223372036854771712\n", "5\n"), None);
        assert_eq!(cgroup_room("1000\n", "300\n"), Some(700));
        assert_eq!(cgroup_room("1000\n", "3000\n"), Some(0));
        assert_eq!(human(3 << 30), "3.0 GiB");
        assert_eq!(human(5 << 20), "5 MiB");
    }
}
