//! One guest session: the one way every subcommand (`run`, `matrix`, `bench`, `fuzz`, `probe`,
//! `exec`) gets a script run on a kernel. Prepare the guest directory, render a checked-in
//! script template ([`crate::template`]), launch it (a virtme-ng VM, or `sh` on the host for the
//! host profile), watch it (boot and whole-VM watchdogs, the console and the guest's output
//! streamed to their logs: [`crate::vm`]), and harvest what the guest left behind (console
//! findings, taint before and after, kernel release, the script's status file).
//!
//! How a VM's end becomes the runner's next step is decided apart, by pure functions
//! ([`next_step`] for the case loop) with their own unit tests.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::accel::Accel;
use crate::console::{self, Finding};
use crate::template::shell_quote;
use crate::vm::{self, Echo, VmEnd, VmRun, VngConfig, Watchdogs};

/// How to start one "VM": vng for kernels, plain `sh` for the host profile.
#[derive(Clone, Copy)]
pub enum Launcher<'a> {
    Vng(&'a VngConfig),
    Host,
}

impl Launcher<'_> {
    /// The boot watchdog in seconds: `over` when given, else 60 with KVM, 180 under TCG and 30
    /// on the host (where "booting" is starting `sh`).
    pub fn boot_secs(&self, over: Option<u64>) -> u64 {
        over.unwrap_or(match self {
            Launcher::Vng(cfg) if cfg.accel == Accel::Kvm => 60,
            Launcher::Vng(_) => 180,
            Launcher::Host => 30,
        })
    }

    /// The CPUs the guest has (the host counts as 2, the case binary's default there).
    pub fn cpus(&self) -> u32 {
        match self {
            Launcher::Vng(cfg) => cfg.cpus,
            Launcher::Host => 2,
        }
    }

    /// `tcg`, `kvm`, or `none (host)`.
    pub fn accel_name(&self) -> &'static str {
        match self {
            Launcher::Vng(cfg) => cfg.accel.as_str(),
            Launcher::Host => "none (host)",
        }
    }
}

/// One session: where its logs go, what the guest may write, how its output is echoed.
pub struct GuestSession<'a> {
    pub launcher: Launcher<'a>,
    /// The kernel console (and vng's own messages), appended.
    pub console_log: PathBuf,
    /// The guest script's output, appended.
    pub output_log: PathBuf,
    /// Directories writable in the guest.
    pub rwdirs: Vec<PathBuf>,
    pub echo: Echo,
}

impl<'a> GuestSession<'a> {
    /// A session logging to `<out>/console.log` and `<out>/guest-output.log`.
    pub fn new(launcher: Launcher<'a>, out: &Path, rwdirs: Vec<PathBuf>, echo: Echo) -> Self {
        GuestSession {
            launcher,
            console_log: out.join("console.log"),
            output_log: out.join("guest-output.log"),
            rwdirs,
            echo,
        }
    }

    /// The same session with the guest's output in another file.
    pub fn output_to(mut self, log: PathBuf) -> Self {
        self.output_log = log;
        self
    }

    /// A fresh, empty guest directory.
    pub fn prepare_dir(dir: &Path) -> Result<()> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
    }

    /// A line in the console log between VMs (`# ===== VM 1: ... =====`).
    pub fn note(&self, line: &str) -> Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.console_log)?;
        writeln!(f, "{line}")?;
        Ok(())
    }

    /// Writes `script` to `path` and runs it to its end under the watchdogs.
    pub fn run_script(&self, path: &Path, script: &str, wd: &Watchdogs) -> Result<VmRun> {
        std::fs::write(path, script).with_context(|| format!("writing {}", path.display()))?;
        let cmd = match self.launcher {
            Launcher::Vng(cfg) => {
                let rw: Vec<&Path> = self.rwdirs.iter().map(PathBuf::as_path).collect();
                cfg.command_rw(
                    &format!("sh {}", shell_quote(&path.display().to_string())),
                    &rw,
                )
            }
            Launcher::Host => {
                let mut c = Command::new("sh");
                c.arg(path);
                c
            }
        };
        vm::run_vm_echo(cmd, wd, &self.console_log, &self.output_log, self.echo)
    }

    /// Runs a bare guest command (no script, no markers: `vng -- true`); VMs only.
    pub fn run_bare(&self, guest_command: &str, wd: &Watchdogs) -> Result<VmRun> {
        let Launcher::Vng(cfg) = self.launcher else {
            anyhow::bail!("a bare boot needs a VM");
        };
        vm::run_vm_echo(
            cfg.command(guest_command, None),
            wd,
            &self.console_log,
            &self.output_log,
            self.echo,
        )
    }

    /// What the guest left in `dir` and on the console (on the host: the script's stderr).
    pub fn harvest(&self, dir: &Path, run: &VmRun, vm_index: usize, status_file: &str) -> Harvest {
        let findings = console::scan(&run.console, vm_index);
        Harvest {
            panicked: console::has_panic(&findings),
            findings,
            tainted_before: read_num(&dir.join("tainted.before")),
            tainted_after: read_num(&dir.join("tainted.after")),
            kernel_release: std::fs::read_to_string(dir.join("kernel.release"))
                .ok()
                .map(|s| s.trim().to_owned()),
            exit_status: std::fs::read_to_string(dir.join(status_file))
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok()),
        }
    }
}

/// What a guest left behind.
#[derive(Debug, Clone, Default)]
pub struct Harvest {
    pub findings: Vec<Finding>,
    /// The console shows a kernel panic.
    pub panicked: bool,
    pub tainted_before: Option<u64>,
    pub tainted_after: Option<u64>,
    pub kernel_release: Option<String>,
    /// The number in the script's status file.
    pub exit_status: Option<i32>,
}

impl Harvest {
    /// `tainted went from B to A` when /proc/sys/kernel/tainted changed during the script.
    pub fn taint_change(&self) -> Option<String> {
        match (self.tainted_before, self.tainted_after) {
            (Some(b), Some(a)) if a != b => {
                Some(format!("/proc/sys/kernel/tainted went from {b} to {a}"))
            }
            _ => None,
        }
    }
}

/// The number in a file (e.g. the guest's copy of /proc/sys/kernel/tainted).
pub fn read_num(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// Seconds of a watchdog pair.
pub fn watchdogs(boot_s: u64, total_s: u64) -> Watchdogs {
    Watchdogs {
        boot: Duration::from_secs(boot_s),
        total: Duration::from_secs(total_s),
    }
}

/// Everything the case loop's next step depends on, about the VM that just ended.
#[derive(Debug, Clone)]
pub struct VmFacts {
    pub index: usize,
    pub max_vms: usize,
    pub end: VmEnd,
    pub panicked: bool,
    /// [`vm::launch_failure`]'s words.
    pub launch_failure: Option<String>,
    /// The signal that interrupted the runner, when one did: the runner killed the VM.
    pub interrupted: Option<&'static str>,
    pub vng_status: Option<i32>,
    /// The case binary's exit status (its status file).
    pub exit_status: Option<i32>,
    /// Whether this VM's report had an env line.
    pub env_seen: bool,
    /// Cases this VM reported.
    pub reported: usize,
    /// Listed cases still without a result.
    pub left: usize,
    /// --test-threads of this VM.
    pub threads: u32,
    pub boot_s: u64,
    pub total_s: u64,
}

/// What the case loop does after a VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Stop here (done, or a failure a fresh VM would only repeat).
    Stop,
    /// The script ran to its end: every listed case still without a result is broken as
    /// "listed but not reported"; stop.
    Finish,
    /// Several cases were in flight when the VM wedged or crashed: rerun what is left one at a
    /// time in a fresh VM, which pins it on one case if it happens again.
    RerunSerially,
    /// The first case left is to blame (`why`); then [`AfterBlame`].
    Blame { why: String, then: AfterBlame },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterBlame {
    /// It was the last case: stop.
    Stop,
    /// Run the rest in a fresh VM.
    Restart,
    /// No VM left: the rest are broken, "not run: N VMs used up".
    UsedUp,
}

/// How a VM's end maps to the case loop's next step, with the infrastructure errors to record.
pub fn next_step(f: &VmFacts) -> (Vec<String>, Step) {
    let mut infra = Vec::new();
    if let Some(sig) = f.interrupted.filter(|_| f.end != VmEnd::Completed) {
        // The runner killed it (docs/runner.md, interrupts): not the kernel's doing, and no
        // VM starts after it.
        infra.push(format!(
            "VM {}: killed by the runner on {sig}; {} case(s) not run",
            f.index, f.left
        ));
        return (infra, Step::Stop);
    }
    if let Some(why) = f.launch_failure.as_ref().filter(|_| !f.panicked) {
        // No case ran, and a deterministic failure would only repeat in a fresh VM.
        infra.push(format!("VM {}: {why}; {} case(s) not run", f.index, f.left));
        return (infra, Step::Stop);
    }
    if f.panicked {
        infra.push(format!("kernel panic in VM {} (see console.log)", f.index));
    }
    let step = match f.end {
        VmEnd::Completed => {
            if f.exit_status.is_none() || !f.env_seen && f.reported == 0 {
                infra.push(format!(
                    "VM {}: the case binary reported nothing (exit status {:?}); see guest-output.log",
                    f.index, f.exit_status
                ));
            }
            Step::Finish
        }
        VmEnd::BootTimeout => {
            infra.push(format!(
                "VM {} did not reach the guest script within {} s (boot watchdog)",
                f.index, f.boot_s
            ));
            Step::Stop
        }
        VmEnd::Watchdog | VmEnd::Exited => {
            if f.end == VmEnd::Exited && !f.panicked {
                infra.push(format!(
                    "VM {} exited before the guest script finished (vng status {:?})",
                    f.index, f.vng_status
                ));
            }
            wedge_step(f)
        }
    };
    (infra, step)
}

/// After a wedge, a crash or a death with cases left.
fn wedge_step(f: &VmFacts) -> Step {
    if f.left == 0 {
        return Step::Stop;
    }
    if f.threads > 1 && f.index + 1 < f.max_vms {
        return Step::RerunSerially;
    }
    let why = if f.panicked {
        "the kernel panicked while this case ran".to_owned()
    } else if f.end == VmEnd::Watchdog {
        format!(
            "the VM watchdog ({} s) fired while this case ran: VM wedged",
            f.total_s
        )
    } else {
        format!(
            "the VM died while this case ran (vng status {:?})",
            f.vng_status
        )
    };
    let then = if f.left <= 1 {
        AfterBlame::Stop
    } else if f.index + 1 >= f.max_vms {
        AfterBlame::UsedUp
    } else {
        AfterBlame::Restart
    };
    Step::Blame { why, then }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(end: VmEnd) -> VmFacts {
        VmFacts {
            index: 0,
            max_vms: 4,
            end,
            panicked: false,
            launch_failure: None,
            interrupted: None,
            vng_status: Some(0),
            exit_status: Some(0),
            env_seen: true,
            reported: 5,
            left: 0,
            threads: 1,
            boot_s: 180,
            total_s: 600,
        }
    }

    #[test]
    fn a_completed_vm_finishes() {
        assert_eq!(next_step(&facts(VmEnd::Completed)), (vec![], Step::Finish));
        let silent = VmFacts {
            exit_status: None,
            ..facts(VmEnd::Completed)
        };
        let (infra, step) = next_step(&silent);
        assert_eq!(step, Step::Finish);
        assert_eq!(
            infra,
            ["VM 0: the case binary reported nothing (exit status None); see guest-output.log"]
        );
        let nothing = VmFacts {
            env_seen: false,
            reported: 0,
            ..facts(VmEnd::Completed)
        };
        assert_eq!(next_step(&nothing).0.len(), 1);
    }

    #[test]
    fn a_vm_killed_on_an_interrupt_stops_the_loop_whatever_else_it_looks_like() {
        for end in [VmEnd::Exited, VmEnd::Watchdog, VmEnd::BootTimeout] {
            let f = VmFacts {
                interrupted: Some("SIGTERM"),
                // The VM never printed its boot marker: without the interrupt it would read as
                // a launch failure.
                launch_failure: Some(
                    "virtme-ng failed to start the VM (vng killed by a signal)".into(),
                ),
                vng_status: None,
                threads: 4,
                left: 3,
                ..facts(end)
            };
            assert_eq!(
                next_step(&f),
                (
                    vec!["VM 0: killed by the runner on SIGTERM; 3 case(s) not run".into()],
                    Step::Stop
                ),
                "{end:?}"
            );
        }
        // A VM that completed before the signal is judged as a completed VM.
        let done = VmFacts {
            interrupted: Some("SIGINT"),
            ..facts(VmEnd::Completed)
        };
        assert_eq!(next_step(&done), (vec![], Step::Finish));
    }

    #[test]
    fn a_launch_failure_stops_unless_the_kernel_panicked() {
        let f = VmFacts {
            launch_failure: Some("virtme-ng failed to start the VM (vng exit 1): x".into()),
            left: 7,
            ..facts(VmEnd::Exited)
        };
        assert_eq!(
            next_step(&f),
            (
                vec![
                    "VM 0: virtme-ng failed to start the VM (vng exit 1): x; 7 case(s) not run"
                        .into()
                ],
                Step::Stop
            )
        );
        let (infra, step) = next_step(&VmFacts {
            panicked: true,
            ..f
        });
        assert_eq!(infra, ["kernel panic in VM 0 (see console.log)"]);
        assert!(
            matches!(step, Step::RerunSerially | Step::Blame { .. }),
            "{step:?}"
        );
    }

    #[test]
    fn a_boot_timeout_is_infrastructure() {
        let (infra, step) = next_step(&VmFacts {
            left: 3,
            ..facts(VmEnd::BootTimeout)
        });
        assert_eq!(step, Step::Stop);
        assert_eq!(
            infra,
            ["VM 0 did not reach the guest script within 180 s (boot watchdog)"]
        );
    }

    #[test]
    fn a_parallel_wedge_is_rerun_serially_before_blaming() {
        let f = VmFacts {
            threads: 2,
            left: 3,
            ..facts(VmEnd::Watchdog)
        };
        assert_eq!(next_step(&f), (vec![], Step::RerunSerially));
        // The last VM cannot rerun: it blames.
        let last = VmFacts { index: 3, ..f };
        assert!(matches!(
            next_step(&last).1,
            Step::Blame {
                then: AfterBlame::UsedUp,
                ..
            }
        ));
    }

    #[test]
    fn a_serial_wedge_blames_the_first_case_left() {
        let f = VmFacts {
            left: 3,
            ..facts(VmEnd::Watchdog)
        };
        let (infra, step) = next_step(&f);
        assert!(infra.is_empty());
        assert_eq!(
            step,
            Step::Blame {
                why: "the VM watchdog (600 s) fired while this case ran: VM wedged".into(),
                then: AfterBlame::Restart
            }
        );
        let one = VmFacts {
            left: 1,
            ..f.clone()
        };
        assert!(matches!(
            next_step(&one).1,
            Step::Blame {
                then: AfterBlame::Stop,
                ..
            }
        ));
        assert_eq!(next_step(&VmFacts { left: 0, ..f }).1, Step::Stop);
    }

    #[test]
    fn a_crash_or_death_says_which() {
        let panic = VmFacts {
            left: 2,
            panicked: true,
            ..facts(VmEnd::Exited)
        };
        let (infra, step) = next_step(&panic);
        assert_eq!(infra, ["kernel panic in VM 0 (see console.log)"]);
        assert!(
            matches!(step, Step::Blame { ref why, .. } if why == "the kernel panicked while this case ran")
        );
        let died = VmFacts {
            left: 2,
            vng_status: Some(137),
            ..facts(VmEnd::Exited)
        };
        let (infra, step) = next_step(&died);
        assert_eq!(
            infra,
            ["VM 0 exited before the guest script finished (vng status Some(137))"]
        );
        assert!(
            matches!(step, Step::Blame { ref why, .. } if why == "the VM died while this case ran (vng status Some(137))")
        );
    }

    #[test]
    fn boot_watchdog_defaults() {
        assert_eq!(Launcher::Host.boot_secs(None), 30);
        assert_eq!(Launcher::Host.boot_secs(Some(5)), 5);
    }

    #[test]
    fn harvest_reads_what_the_guest_left() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("tainted.before"), "0\n").unwrap();
        std::fs::write(d.path().join("tainted.after"), "512\n").unwrap();
        std::fs::write(d.path().join("kernel.release"), "6.12.0\n").unwrap();
        std::fs::write(d.path().join("exit.status"), "101\n").unwrap();
        let s = GuestSession::new(Launcher::Host, d.path(), vec![], Echo::Off);
        let run = VmRun {
            end: VmEnd::Completed,
            boot_seconds: Some(0.1),
            wall_seconds: 1.0,
            vng_status: Some(0),
            console: "Kernel panic - not syncing\n".into(),
        };
        let h = s.harvest(d.path(), &run, 0, "exit.status");
        assert_eq!(
            (h.exit_status, h.kernel_release.as_deref()),
            (Some(101), Some("6.12.0"))
        );
        assert_eq!(
            h.taint_change().as_deref(),
            Some("/proc/sys/kernel/tainted went from 0 to 512")
        );
        assert!(h.panicked && h.findings.len() == 1, "{:?}", h.findings);
    }
}
