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
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    rest.trim_start().chars().next()
}

/// Parent pid from /proc/<pid>/stat.
pub fn ppid(pid: i32) -> Option<i32> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
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
