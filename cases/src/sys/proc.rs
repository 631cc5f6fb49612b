//! What /proc says about processes: children, state, where a task is stuck.

use std::fs;

/// Whether this process has one thread (/proc/self/stat, num_threads).
pub fn single_threaded() -> bool {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|st| {
            st.rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().nth(17))
                .and_then(|n| n.parse::<u32>().ok())
        })
        == Some(1)
}

/// Children of `pid` (all its threads), zombies included.
pub fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        if let Ok(s) = fs::read_to_string(t.path().join("children")) {
            out.extend(s.split_whitespace().filter_map(|x| x.parse::<i32>().ok()));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// All descendants of `pid`, depth first (a snapshot).
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut todo = children(pid);
    while let Some(p) = todo.pop() {
        if out.contains(&p) {
            continue;
        }
        out.push(p);
        todo.extend(children(p));
    }
    out
}

/// The one-letter state from /proc/<pid>/stat (R, S, D, Z, T, t, X...).
pub fn state(pid: i32) -> Option<char> {
    stat_field(pid, 3)?.chars().next()
}

/// Field `n` of /proc/<pid>/stat, counted as proc(5) does (1 is the pid, 3
/// the state), for the fields after the command name.
fn stat_field(pid: i32, n: usize) -> Option<String> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    rest.split_whitespace()
        .nth(n.checked_sub(3)?)
        .map(str::to_string)
}

/// Parent pid from /proc/<pid>/stat.
pub fn ppid(pid: i32) -> Option<i32> {
    stat_field(pid, 4)?.parse().ok()
}

/// When the process started (/proc/<pid>/stat field 22, clock ticks since
/// boot): with the pid, it names one process across pid reuse.
pub fn start_time(pid: i32) -> Option<u64> {
    stat_field(pid, 22)?.parse().ok()
}

/// Where the task sleeps in the kernel (/proc/<pid>/wchan: a function name
/// with CONFIG_KALLSYMS); `None` when it runs, has no such file, or the
/// kernel gives no name.
pub fn wchan(pid: i32) -> Option<String> {
    let w = fs::read_to_string(format!("/proc/{pid}/wchan")).ok()?;
    let w = w.trim();
    (!w.is_empty() && w != "0" && !w.starts_with(|c: char| c.is_ascii_digit())).then(|| w.into())
}

/// `comm`, wchan and kernel stack of a stuck task, as far as readable.
pub fn stuck_report(pid: i32) -> String {
    let rd = |f: &str| fs::read_to_string(format!("/proc/{pid}/{f}")).map(|s| s.trim().to_string());
    let mut s = format!(
        "pid {pid} ({}) state {} wchan {}",
        rd("comm").unwrap_or_default(),
        state(pid).map(String::from).unwrap_or_else(|| "?".into()),
        rd("wchan").unwrap_or_else(|_| "?".into())
    );
    if let Ok(st) = rd("stack") {
        if !st.is_empty() {
            let frames: Vec<&str> = st
                .lines()
                .take(8)
                .map(|l| l.split_whitespace().nth(1).unwrap_or(l))
                .collect();
            s.push_str(&format!(" stack [{}]", frames.join(" < ")));
        }
    }
    s
}

/// `uname -r`.
pub fn kernel_release() -> String {
    rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned()
}

/// (major, minor) of the running kernel.
pub fn kernel_version() -> (u32, u32) {
    parse_version(&kernel_release())
}

pub fn parse_version(rel: &str) -> (u32, u32) {
    let mut it = rel
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

/// How deep the caller's pid namespace is (0 = initial namespace).
pub fn pid_ns_level() -> usize {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("NSpid:"))
                .map(|l| l.split_whitespace().count().saturating_sub(2))
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_of_this_process() {
        let me = std::process::id() as i32;
        // The main thread (what /proc/<pid>/stat shows) runs or waits for the test threads.
        assert!(matches!(state(me), Some('R' | 'S')), "{:?}", state(me));
        assert_eq!(ppid(me), Some(std::os::unix::process::parent_id() as i32));
        let t = start_time(me).expect("start time");
        assert_eq!(start_time(me), Some(t));
        // pid 1 started first.
        assert!(start_time(1).expect("init's start time") <= t);
        assert_eq!(state(-1), None);
        assert_eq!(start_time(-1), None);
    }
}
