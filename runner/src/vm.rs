//! One virtme-ng VM: start it, stream the kernel console and the guest script's output to
//! files, enforce the boot and whole-VM watchdogs, and tell how it ended.
//!
//! The guest script prints [`START_MARKER`] first and [`END_MARKER`] last on its stdout (a
//! virtio-serial port that vng connects to its own stdout), so the runner knows when the guest
//! reached userspace and whether the script ran to its end, independently of vng's exit code.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc::{channel, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::accel::Accel;

pub const START_MARKER: &str = "WAITCONF-GUEST-START";
pub const END_MARKER: &str = "WAITCONF-GUEST-END";

/// virtme-ng invocation shared by every VM the runner starts.
#[derive(Debug, Clone)]
pub struct VngConfig {
    pub vng: PathBuf,
    pub image: PathBuf,
    pub accel: Accel,
    pub memory: String,
    pub cpus: u32,
    /// Extra QEMU arguments (`--qemu-opts`), each handed to vng as `--qemu-opts=OPTS`.
    pub qemu_opts: Vec<String>,
}

impl VngConfig {
    /// The vng command line for `guest_command`, with the console on stderr (`--verbose`) and
    /// `rwdir` writable in the guest.
    pub fn command(&self, guest_command: &str, rwdir: Option<&Path>) -> Command {
        self.command_rw(guest_command, rwdir.as_slice())
    }

    /// [`VngConfig::command`] with any number of writable directories.
    pub fn command_rw(&self, guest_command: &str, rwdirs: &[&Path]) -> Command {
        let mut c = Command::new(&self.vng);
        // vng runs `virtme-run` from PATH: put the venv's bin first.
        if let Some(bin) = self.vng.parent() {
            let path = std::env::var_os("PATH").unwrap_or_default();
            let mut dirs = vec![bin.to_path_buf()];
            dirs.extend(std::env::split_paths(&path));
            if let Ok(joined) = std::env::join_paths(dirs) {
                c.env("PATH", joined);
            }
        }
        c.arg("--run").arg(&self.image);
        // 9p needs no virtiofsd on the host and is built into our minimal kernels (and a module
        // in Debian's, which virtme-ng puts into its initramfs).
        c.arg("--force-9p");
        c.arg("--verbose");
        c.args(["--memory", &self.memory, "--cpus", &self.cpus.to_string()]);
        if self.accel == Accel::Tcg {
            c.arg("--disable-kvm");
        }
        for dir in rwdirs {
            c.arg("--rwdir").arg(dir);
        }
        for o in &self.qemu_opts {
            c.arg(format!("--qemu-opts={o}"));
        }
        c.arg("--exec").arg(guest_command);
        c
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmEnd {
    /// The guest script printed its end marker and the VM exited.
    Completed,
    /// No start marker within the boot watchdog.
    BootTimeout,
    /// Booted, but the whole-VM watchdog fired.
    Watchdog,
    /// The VM exited before the guest script finished (panic, QEMU error, ...).
    Exited,
}

impl VmEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            VmEnd::Completed => "completed",
            VmEnd::BootTimeout => "boot-timeout",
            VmEnd::Watchdog => "watchdog",
            VmEnd::Exited => "exited",
        }
    }

    /// The outcome a report records for the VM: `panic` when the console showed a kernel
    /// panic, else how it ended.
    pub fn outcome(self, panicked: bool) -> String {
        if panicked {
            "panic".into()
        } else {
            self.as_str().into()
        }
    }
}

#[derive(Debug)]
pub struct VmRun {
    pub end: VmEnd,
    /// Host seconds from spawn to the guest's start marker.
    pub boot_seconds: Option<f64>,
    pub wall_seconds: f64,
    pub vng_status: Option<i32>,
    pub console: String,
}

/// Why a VM that exited on its own never reached the guest script, or None when it did (or was
/// killed by a watchdog): the host-side launch failed (vng or QEMU gave up before the kernel
/// printed its banner), in vng's own last words, or the kernel died while booting.
pub fn launch_failure(run: &VmRun) -> Option<String> {
    if run.end != VmEnd::Exited || run.boot_seconds.is_some() {
        return None;
    }
    let status = run
        .vng_status
        .map(|s| format!("exit {s}"))
        .unwrap_or_else(|| "killed by a signal".into());
    let tail = |n: usize| {
        let lines: Vec<&str> = run
            .console
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        lines[lines.len().saturating_sub(n)..].join(" | ")
    };
    if run.console.contains("cannot find script I/O ports") {
        // Seen under a loaded host: a miscalibrated TSC, virtio-serial late, virtme-ng-init's
        // console fallback; the script ran, but its markers went to the console.
        Some(format!(
            "the guest script ran on the console instead of virtio-serial (virtme-ng-init: cannot \
             find script I/O ports), so the runner never saw it start (vng {status}); last \
             console lines: {}",
            tail(3)
        ))
    } else if run.console.contains("Linux version") {
        let kernel_ended = !crate::console::scan(&run.console, 0).is_empty()
            || [
                "reboot:",
                "Power down",
                "System halted",
                "Restarting system",
            ]
            .iter()
            .any(|w| run.console.contains(w));
        Some(if kernel_ended {
            format!(
                "the kernel stopped while booting, before the guest script started (vng {status}); \
                 last console lines: {}",
                tail(3)
            )
        } else {
            // Seen here: QEMU segfaulting under TCG during PCI enumeration (the host's kernel
            // log names it); the kernel said nothing of its own end.
            format!(
                "the VM stopped while the kernel was booting, with no panic, oops or power-off on \
                 its console: QEMU itself may have died (see the host's kernel log) (vng \
                 {status}); last console lines: {}",
                tail(3)
            )
        })
    } else {
        Some(format!(
            "virtme-ng failed to start the VM (vng {status}): {}",
            if run.console.trim().is_empty() {
                "it printed nothing".to_owned()
            } else {
                tail(3)
            }
        ))
    }
}

pub struct Watchdogs {
    pub boot: Duration,
    pub total: Duration,
}

enum Line {
    Out(String),
    Console(String),
}

/// Runs one VM to its end. `console_log` gets the kernel console (and vng's own messages),
/// `stdout_log` the guest script's output; both are appended as lines arrive, so they survive a
/// watchdog kill. With `echo`, guest output is also echoed to stderr as progress.
pub fn run_vm(
    cmd: Command,
    wd: &Watchdogs,
    console_log: &Path,
    stdout_log: &Path,
    echo: bool,
) -> Result<VmRun> {
    let echo = if echo { Echo::Progress } else { Echo::Off };
    run_vm_echo(cmd, wd, console_log, stdout_log, echo)
}

/// Where [`run_vm_echo`] copies the guest's output lines as they arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    Off,
    /// To stderr, as `  guest| LINE` progress.
    Progress,
    /// To stdout, as they are: the guest command's own output (`runner exec`).
    Plain,
}

/// [`run_vm`] with a choice of where guest output is echoed.
pub fn run_vm_echo(
    mut cmd: Command,
    wd: &Watchdogs,
    console_log: &Path,
    stdout_log: &Path,
    echo: Echo,
) -> Result<VmRun> {
    let mut w = Watch {
        console_file: append(console_log)?,
        stdout_file: append(stdout_log)?,
        console: String::new(),
        boot_seconds: None,
        saw_end: false,
        started: Instant::now(),
        echo,
    };
    writeln!(w.console_file, "# {cmd:?}")?;
    let (mut child, _live) = crate::interrupt::Group::spawn(&mut cmd, crate::interrupt::Kind::Vm)?;
    let (tx, rx) = channel::<Line>();
    let out = child.stdout.take().expect("piped");
    let err = child.stderr.take().expect("piped");
    let tx2 = tx.clone();
    let t1 = std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(Line::Out(l));
        }
    });
    let t2 = std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx2.send(Line::Console(l));
        }
    });
    let killed = w.watch(&rx, wd, &child)?;
    let _ = t1.join();
    let _ = t2.join();
    let status = child.wait()?;
    let end = match killed {
        Some(e) => e,
        None if w.saw_end => VmEnd::Completed,
        None => VmEnd::Exited,
    };
    Ok(VmRun {
        end,
        boot_seconds: w.boot_seconds,
        wall_seconds: w.started.elapsed().as_secs_f64(),
        vng_status: status.code(),
        console: w.console,
    })
}

fn append(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

/// What [`run_vm_echo`] has seen of a VM so far.
struct Watch {
    console_file: std::fs::File,
    stdout_file: std::fs::File,
    console: String,
    boot_seconds: Option<f64>,
    saw_end: bool,
    started: Instant,
    echo: Echo,
}

impl Watch {
    /// Takes lines until both pipes close, enforcing the watchdogs: the end a watchdog
    /// killed the VM with, if one did.
    fn watch(
        &mut self,
        rx: &std::sync::mpsc::Receiver<Line>,
        wd: &Watchdogs,
        child: &std::process::Child,
    ) -> Result<Option<VmEnd>> {
        loop {
            let deadline = if self.boot_seconds.is_none() {
                wd.boot
            } else {
                wd.total
            };
            let left = deadline.saturating_sub(self.started.elapsed());
            match rx.recv_timeout(left) {
                Ok(Line::Console(l)) => self.console_line(&l)?,
                Ok(Line::Out(l)) => self.output_line(&l)?,
                Err(RecvTimeoutError::Timeout) => {
                    let end = if self.boot_seconds.is_none() {
                        VmEnd::BootTimeout
                    } else {
                        VmEnd::Watchdog
                    };
                    writeln!(
                        self.console_file,
                        "# runner: {} after {:.1} s, killing the VM",
                        end.as_str(),
                        self.started.elapsed().as_secs_f64()
                    )?;
                    kill_group(child);
                    // Drain what is left (the pipes close once QEMU is gone), no deadlines.
                    for line in rx.iter() {
                        if let Line::Console(l) = line {
                            self.console_line(&l)?;
                        }
                    }
                    return Ok(Some(end));
                }
                Err(RecvTimeoutError::Disconnected) => return Ok(None),
            }
        }
    }

    fn console_line(&mut self, l: &str) -> Result<()> {
        writeln!(self.console_file, "{l}")?;
        self.console.push_str(l);
        self.console.push('\n');
        Ok(())
    }

    fn output_line(&mut self, l: &str) -> Result<()> {
        writeln!(self.stdout_file, "{l}")?;
        if l.trim() == START_MARKER && self.boot_seconds.is_none() {
            self.boot_seconds = Some(self.started.elapsed().as_secs_f64());
        } else if l.trim() == END_MARKER {
            self.saw_end = true;
        } else {
            match self.echo {
                Echo::Off => {}
                Echo::Progress => eprintln!(" {} guest| {l}", crate::progress::label()),
                Echo::Plain => {
                    let mut o = std::io::stdout().lock();
                    let _ = writeln!(o, "{l}");
                    let _ = o.flush();
                }
            }
        }
        Ok(())
    }
}

fn kill_group(child: &std::process::Child) {
    // The VM was started in its own process group (vng, QEMU and helpers); kill all of it.
    let pid = rustix::process::Pid::from_child(child);
    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c").arg(script);
        c
    }

    fn run(script: &str, boot: u64, total: u64) -> (VmRun, String) {
        let dir = tempfile::tempdir().unwrap();
        let (c, o) = (dir.path().join("console"), dir.path().join("out"));
        let wd = Watchdogs {
            boot: Duration::from_secs(boot),
            total: Duration::from_secs(total),
        };
        let r = run_vm(sh(script), &wd, &c, &o, false).unwrap();
        (r, std::fs::read_to_string(o).unwrap())
    }

    #[test]
    fn qemu_opts_go_to_vng_just_before_the_guest_command() {
        let mut cfg = VngConfig {
            vng: PathBuf::from("/venv/bin/vng"),
            image: PathBuf::from("/k/bzImage"),
            accel: Accel::Tcg,
            memory: "1G".into(),
            cpus: 2,
            qemu_opts: vec![],
        };
        let args = |c: &VngConfig| -> Vec<String> {
            c.command("true", None)
                .get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        };
        assert!(!args(&cfg).iter().any(|a| a.starts_with("--qemu-opts")));
        cfg.qemu_opts = vec!["-d guest_errors".into(), "-bogus".into()];
        let a = args(&cfg);
        let n = a.len();
        assert_eq!(
            a[n - 4..],
            [
                "--qemu-opts=-d guest_errors",
                "--qemu-opts=-bogus",
                "--exec",
                "true"
            ]
        );
    }

    #[test]
    fn completed_run_records_boot_and_output() {
        let (r, out) = run(
            &format!(
                "echo 'Linux version x' >&2; echo {START_MARKER}; echo case; echo {END_MARKER}"
            ),
            30,
            30,
        );
        assert_eq!(r.end, VmEnd::Completed);
        assert!(r.boot_seconds.is_some());
        assert!(r.console.contains("Linux version"));
        assert!(out.contains("case"));
        assert_eq!(r.vng_status, Some(0));
    }

    #[test]
    fn exit_before_the_guest_is_a_launch_failure_in_vngs_words() {
        let (r, _) = run(
            "echo 'virtme-run: a statically linked busybox could not be found, please install busybox-static' >&2; exit 1",
            30,
            30,
        );
        let why = launch_failure(&r).unwrap();
        assert!(
            why.contains("failed to start") && why.contains("exit 1"),
            "{why}"
        );
        assert!(why.contains("please install busybox-static"), "{why}");
        let (r, _) = run(
            "echo 'Linux version 6.12' >&2; echo 'reboot: System halted' >&2; exit 0",
            30,
            30,
        );
        let why = launch_failure(&r).unwrap();
        assert!(
            why.contains("while booting") && why.contains("System halted"),
            "{why}"
        );
        // After the banner, the console says who ended the VM: the kernel (a panic), nobody
        // (cut off mid-line: QEMU's death, seen as a segfault under TCG), or virtme-ng-init's
        // console fallback (the script ran, its markers went to the console).
        for (console, said) in [
            (
                "pci 0000:00:07.0: BAR 0 [io  0xc140-0xc17f]",
                "QEMU itself may have died",
            ),
            (
                "Kernel panic - not syncing: VFS",
                "the kernel stopped while booting",
            ),
            (
                "virtme-ng-init: virtme-init: cannot find script I/O ports; make sure virtio-serial is available",
                "instead of virtio-serial",
            ),
        ] {
            let (r, _) = run(
                &format!("echo 'Linux version 6.12' >&2; echo '{console}' >&2; exit 255"),
                30,
                30,
            );
            let why = launch_failure(&r).unwrap();
            assert!(why.contains(said) && why.contains("exit 255"), "{why}");
        }
        let (r, _) = run(&format!("echo {START_MARKER}; exit 1"), 30, 30);
        assert_eq!(launch_failure(&r), None, "the guest started");
    }

    #[test]
    fn exit_without_end_marker_is_exited() {
        let (r, _) = run(
            &format!("echo {START_MARKER}; echo 'Kernel panic - not syncing' >&2; exit 1"),
            30,
            30,
        );
        assert_eq!(r.end, VmEnd::Exited);
        assert!(r.console.contains("Kernel panic"));
    }

    // The watchdog tests wait for a deadline of one second on purpose: that is the behaviour
    // under test, not synchronisation.
    #[test]
    fn boot_watchdog_kills_the_process_group() {
        let (r, _) = run("sleep 600 & sleep 600", 1, 30);
        assert_eq!(r.end, VmEnd::BootTimeout);
        assert!(r.boot_seconds.is_none());
        assert!(r.wall_seconds < 30.0);
    }

    #[test]
    fn total_watchdog_after_boot() {
        let (r, _) = run(&format!("echo {START_MARKER}; sleep 600"), 30, 1);
        assert_eq!(r.end, VmEnd::Watchdog);
        assert!(r.boot_seconds.is_some());
    }
}
