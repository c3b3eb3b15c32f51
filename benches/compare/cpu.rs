//! CPU time this process has used: under load, wall time measures the machine's contention;
//! this measures the work itself.

/// CPU time this process has used so far, user + sys of every thread, in ms (fields 14 and 15
/// of `/proc/self/stat`, 10 ms ticks); 0 where /proc is not there.
pub(crate) fn process_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The command name (field 2) may hold spaces; the fields after its `)` are plain.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    (ticks(11).unwrap_or(0.0) + ticks(12).unwrap_or(0.0)) * 10.0 // USER_HZ is 100 on Linux
}
