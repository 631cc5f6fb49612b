//! Kernel console scanning: the lines that mean the kernel itself misbehaved, whatever the
//! cases reported. Patterns follow syzkaller's pkg/report/linux.go in spirit (oops headers,
//! not every line of a trace).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable short name: `panic`, `BUG`, `WARNING`, `hung-task`, `rcu-stall`,
    /// `general-protection-fault`, `KASAN`, `UBSAN`, `oops`, `soft-lockup`.
    pub kind: String,
    pub line: String,
    /// 1-based line number in that VM's console log.
    pub line_no: usize,
    pub vm: usize,
}

/// (kind, needle) pairs, checked in order; the first match names the line. Order matters:
/// `watchdog: BUG: soft lockup` is a soft lockup before it is a BUG.
const PATTERNS: &[(&str, &str)] = &[
    ("panic", "Kernel panic - not syncing"),
    ("soft-lockup", "BUG: soft lockup"),
    ("KASAN", "BUG: KASAN:"),
    ("KFENCE", "BUG: KFENCE:"),
    ("UBSAN", "UBSAN:"),
    ("BUG", "BUG:"),
    ("BUG", "kernel BUG at"),
    ("general-protection-fault", "general protection fault"),
    ("oops", "Oops:"),
    ("WARNING", "WARNING:"),
    ("hung-task", "blocked for more than"),
    ("rcu-stall", "rcu_sched self-detected stall"),
    ("rcu-stall", "rcu_preempt self-detected stall"),
    ("rcu-stall", "detected stalls on CPUs/tasks"),
    ("rcu-stall", "RCU stall"),
];

/// Scans one VM's console text. Only kernel lines count: virtme-ng's own chatter and QEMU's
/// messages do not start with a printk timestamp, so lines are matched wherever they appear but
/// our own guest script never prints these words.
pub fn scan(console: &str, vm: usize) -> Vec<Finding> {
    let mut out = Vec::new();
    for (i, line) in console.lines().enumerate() {
        if let Some((kind, _)) = PATTERNS.iter().find(|(_, needle)| line.contains(needle)) {
            out.push(Finding {
                kind: (*kind).to_owned(),
                line: line.trim().to_owned(),
                line_no: i + 1,
                vm,
            });
        }
    }
    out
}

pub fn has_panic(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.kind == "panic")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONSOLE: &str = "\
[    0.000000] Linux version 6.12.117-waitpid
[    1.100000] Run /init as init process
[   12.000000] ------------[ cut here ]------------
[   12.000001] WARNING: CPU: 0 PID: 77 at kernel/exit.c:1124 eligible_child+0x40/0x50
[   40.000000] INFO: task wait-conformanc:91 blocked for more than 30 seconds.
[   41.000000] watchdog: BUG: soft lockup - CPU#1 stuck for 22s! [x:1]
[   42.000000] BUG: kernel NULL pointer dereference, address: 0000000000000008
[   43.000000] Oops: 0002 [#1] PREEMPT SMP
[   44.000000] BUG: KASAN: slab-use-after-free in do_wait+0x1/0x2
[   45.000000] UBSAN: array-index-out-of-bounds in kernel/exit.c:10:2
[   46.000000] general protection fault, probably for non-canonical address 0xdead: 0000 [#1]
[   47.000000] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:
[   48.000000] sysrq: Trigger a crash
[   48.100000] Kernel panic - not syncing: sysrq triggered crash
";

    #[test]
    fn finds_each_kind_once_with_line_numbers() {
        let f = scan(CONSOLE, 1);
        let kinds: Vec<&str> = f.iter().map(|f| f.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "WARNING",
                "hung-task",
                "soft-lockup",
                "BUG",
                "oops",
                "KASAN",
                "UBSAN",
                "general-protection-fault",
                "rcu-stall",
                "panic"
            ]
        );
        assert_eq!(f[0].line_no, 4);
        assert_eq!(f[0].vm, 1);
        assert!(has_panic(&f));
    }

    #[test]
    fn clean_boot_has_no_findings() {
        let clean =
            "[    0.0] Linux version 6.12\n[    1.1] Run /init as init process\nvirtme: use 9p\n";
        assert!(scan(clean, 0).is_empty());
        assert!(!has_panic(&[]));
    }
}
