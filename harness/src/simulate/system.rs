//! Facts about this process the simulation checks and reports.

/// Peak resident memory of this process (VmHWM), bytes.
pub fn peak_memory_bytes() -> u64 {
    peak_memory_of("self")
}

/// Peak resident memory (VmHWM) of `/proc/<process>`, bytes; 0 when it
/// cannot be read.
pub(super) fn peak_memory_of(process: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{process}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// The soft limit of open files, from /proc/self/limits.
pub fn open_files_limit() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = s.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}
