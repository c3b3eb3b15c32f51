//! CPU time this process has used: under load, wall time measures the machine's contention;
//! this measures the work itself.

/// CPU time this process has used so far, user + sys of every thread, in ms (fields 14 and 15
/// of `/proc/self/stat`, 10 ms ticks); 0 where /proc is not there.
pub(crate) fn process_ms() -> f64 {
    stat_file_ms("/proc/self/stat")
}

/// User + sys ms in the `stat` file at `path` (0 if it cannot be read).
fn stat_file_ms(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // The command name (field 2) may hold spaces; the fields after its `)` are plain.
    stat_ms(stat.rsplit_once(')').map_or("", |(_, rest)| rest))
}

/// User + sys ms from the fields of a `stat` line that follow the command name's `)`.
fn stat_ms(after_name: &str) -> f64 {
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    (ticks(11).unwrap_or(0.0) + ticks(12).unwrap_or(0.0)) * 10.0 // USER_HZ is 100 on Linux
}

/// CPU time each live thread of this process has used so far, user + sys in ms, by thread
/// name (`/proc/self/task/*/stat`; threads of one name summed); empty where /proc is not there.
/// A thread that has exited is no longer listed (its time stays in [`process_ms`]).
pub(crate) fn threads_ms() -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        let ms = stat_ms(&stat[close + 1..]);
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some((_, total)) => *total += ms,
            None => out.push((name, ms)),
        }
    }
    out
}

/// CPU time of the calling thread so far, user + sys, in ms (`/proc/thread-self/stat`).
pub(crate) fn this_thread_ms() -> f64 {
    stat_file_ms("/proc/thread-self/stat")
}
