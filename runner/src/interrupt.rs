//! What an interrupt does: SIGINT, SIGTERM and SIGHUP end the runner after killing the process
//! groups of the long-running children it started in groups of their own (VMs: vng, QEMU and
//! their helpers; kernel builds: make and its compilers). Those groups are their own so that
//! a watchdog can kill each whole; which is also why neither a terminal's Ctrl-C nor a CI
//! system's SIGTERM to the runner reaches them. A build left running would go on writing into
//! a cache directory whose lock died with the runner.
//!
//! A watcher thread takes the signals (signal-hook), so nothing runs in a signal handler. Once
//! it has killed the groups, no new one starts ([`Group::spawn`] refuses), so the command in
//! progress ends the way it ends when its VM dies or its build fails: it writes its reports
//! (the cases not run as such), restores a mutant it applied, and returns; `main` then exits
//! 128 + the signal. Should it not return within [`GRACE`] (a command that started something
//! unregistered, say cargo), or should a second signal come, the watcher exits itself.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result};

/// What a registered group is; it says how the group is ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// vng, QEMU and their helpers: SIGKILL.
    Vm,
    /// make and its compilers: SIGTERM, on which make deletes the targets it was writing (a
    /// SIGKILLed compiler leaves a truncated object newer than its source, which the next
    /// incremental build would take as up to date).
    Build,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Vm => "VM",
            Kind::Build => "build",
        }
    }

    fn signal(self) -> rustix::process::Signal {
        match self {
            Kind::Vm => rustix::process::Signal::KILL,
            Kind::Build => rustix::process::Signal::TERM,
        }
    }
}

/// The registered groups: (process group id, what it is).
static LIVE: Mutex<Vec<(i32, Kind)>> = Mutex::new(Vec::new());

/// The signal that interrupted the runner, 0 while none has.
static INTERRUPTED: AtomicI32 = AtomicI32::new(0);

/// How long the command in progress has to write its reports after an interrupt.
const GRACE: Duration = Duration::from_secs(15);

/// The signal that interrupted the runner, if one did: `main` exits 128 + it.
pub fn received() -> Option<i32> {
    match INTERRUPTED.load(Ordering::SeqCst) {
        0 => None,
        sig => Some(sig),
    }
}

/// The name of the signal that interrupted the runner, if one did.
pub fn received_name() -> Option<&'static str> {
    received().map(signal_name)
}

fn signal_name(sig: i32) -> &'static str {
    use signal_hook::consts::{SIGINT, SIGTERM};
    match sig {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "SIGHUP",
    }
}

/// A child started with `process_group(0)`, registered until dropped (after it was waited for).
pub struct Group(i32);

impl Group {
    /// Start `cmd` in a process group of its own, stdin closed (it is not the terminal's
    /// foreground group, where a read would stop it), stdout and stderr piped, and register it
    /// as `what` until the returned [`Group`] is dropped.
    pub fn spawn(
        cmd: &mut std::process::Command,
        what: Kind,
    ) -> Result<(std::process::Child, Group)> {
        use std::os::unix::process::CommandExt;
        use std::process::Stdio;
        // Spawned and registered under the lock: an interrupt that arrives once the child runs
        // (it may already have told someone it started) finds it registered.
        let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sig) = received() {
            anyhow::bail!(
                "interrupted by {}: not starting a {}",
                signal_name(sig),
                what.name()
            );
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {:?}", cmd.get_program()))?;
        let pid = child.id() as i32;
        live.push((pid, what));
        Ok((child, Group(pid)))
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        LIVE.lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(p, _)| *p != self.0);
    }
}

/// From now on SIGINT, SIGTERM and SIGHUP end every registered group ([`kill_all`]) and stop
/// new ones from starting; the runner says which signal and what it killed, lets the command
/// in progress write its reports, and exits 128 + the signal's number, as a shell reports a
/// process killed by it (130 for SIGINT, 143 for SIGTERM).
pub fn install() -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("installing the SIGINT/SIGTERM/SIGHUP watcher")?;
    std::thread::Builder::new()
        .name("interrupt".into())
        .spawn(move || {
            let Some(sig) = signals.forever().next() else {
                return;
            };
            {
                // Under the lock: a spawn either registered before, and is killed, or sees the
                // flag after, and refuses. The flag is set once the message is out, so that
                // `main`, which exits as soon as it sees the flag, cannot exit before it.
                let live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
                let killed = kill_all(&live);
                eprintln!(
                    "runner: {}: killed {}; writing what was done, then exiting {}",
                    signal_name(sig),
                    describe(&killed),
                    128 + sig
                );
                INTERRUPTED.store(sig, Ordering::SeqCst);
            }
            // A second signal, or the grace period over: exit now.
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                if let Some(again) = signals.forever().next() {
                    let _ = tx.send(again);
                }
            });
            let why = match rx.recv_timeout(GRACE) {
                Ok(again) => format!("a second {}", signal_name(again)),
                Err(_) => format!("the command did not end within {} s", GRACE.as_secs()),
            };
            eprintln!("runner: {why}; exiting {}", 128 + sig);
            std::process::exit(128 + sig);
        })
        .context("starting the signal watcher thread")?;
    Ok(())
}

/// End every registered group as its kind says ([`Kind::signal`]); what was there.
fn kill_all(live: &[(i32, Kind)]) -> Vec<(i32, Kind)> {
    for (g, what) in live {
        if let Some(pid) = rustix::process::Pid::from_raw(*g) {
            let _ = rustix::process::kill_process_group(pid, what.signal());
        }
    }
    live.to_vec()
}

/// "1 running VM(s)", "1 running VM(s) and 1 running build(s)", "nothing running".
fn describe(groups: &[(i32, Kind)]) -> String {
    let mut kinds: Vec<(Kind, usize)> = Vec::new();
    for (_, what) in groups {
        match kinds.iter_mut().find(|(k, _)| k == what) {
            Some((_, n)) => *n += 1,
            None => kinds.push((*what, 1)),
        }
    }
    if kinds.is_empty() {
        return "nothing running".into();
    }
    kinds
        .iter()
        .map(|(k, n)| format!("{n} running {}(s)", k.name()))
        .collect::<Vec<_>>()
        .join(" and ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_was_killed_is_told_by_kind() {
        assert_eq!(describe(&[]), "nothing running");
        assert_eq!(describe(&[(5, Kind::Vm)]), "1 running VM(s)");
        assert_eq!(
            describe(&[(5, Kind::Vm), (6, Kind::Build), (7, Kind::Vm)]),
            "2 running VM(s) and 1 running build(s)"
        );
    }

    #[test]
    fn a_group_is_registered_until_dropped() {
        let (mut child, g) =
            Group::spawn(&mut std::process::Command::new("true"), Kind::Vm).unwrap();
        let pid = child.id() as i32;
        let has = || LIVE.lock().unwrap().iter().any(|(p, _)| *p == pid);
        assert!(has());
        child.wait().unwrap();
        drop(g);
        assert!(!has());
    }
}
