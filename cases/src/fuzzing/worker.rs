//! The executor process of a fuzz campaign.
//!
//! libFuzzer's process (F) decodes inputs and runs the model; a long-lived
//! worker (W), forked from F once, executes them. W is a child subreaper
//! that dies with F, blocks every blockable signal, and after every
//! execution checks and repairs its hygiene: leftover children are killed and
//! reaped with focused waits (a generic wait cannot see CLONE_WAIT_PID
//! children), the fd count must return to its baseline, SIGCHLD must be back
//! at SIG_DFL, pending signals are drained. F talks to W over two pipes
//! (u32 length + bytes), with a timeout: a hang is a finding.
//!
//! Keeping W alive between inputs avoids a fork per input; inputs that
//! cannot disturb F run in F itself (fuzz/src/lib.rs), which saves the round
//! trip (see the benchmark in fuzz/). W leads its own process group so that
//! F's waits on its own group never see it.

use std::os::fd::{AsRawFd, OwnedFd};

use serde::{Deserialize, Serialize};

use super::isolate;
use crate::harness::executor::{self, Proc};
use crate::sys::wait::WaitOutcome;

/// What W appends to every reply.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hygiene {
    /// children still there after the handler returned (now reaped)
    pub leftover_children: Vec<i32>,
    /// open fds minus the baseline taken when W started
    pub fd_delta: i64,
    /// SIGCHLD was at SIG_IGN (now restored)
    pub sigchld_ignored: bool,
}

impl Hygiene {
    pub fn clean(&self) -> bool {
        self.leftover_children.is_empty() && self.fd_delta == 0 && !self.sigchld_ignored
    }
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    payload: String,
    hygiene: Hygiene,
}

/// Why a call to the worker failed.
#[derive(Debug)]
pub enum WorkerFailure {
    /// no reply within the timeout; what W and its children were doing
    Hang(String),
    /// W died (how)
    Died(String),
}

impl std::fmt::Display for WorkerFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorkerFailure::Hang(s) => write!(f, "hang: {s}"),
            WorkerFailure::Died(s) => write!(f, "worker died: {s}"),
        }
    }
}

pub struct Worker {
    pid: i32,
    /// W by its pidfd until it is reaped
    proc: Option<Proc>,
    /// W's exit_signal is SIGCHLD (forked), not 0 (see [`Worker::spawn`])
    sigchld: bool,
    /// W's process group, as read back after setting it
    pgid: i32,
    to_w: OwnedFd,
    from_w: OwnedFd,
}

fn send(fd: &OwnedFd, msg: &[u8]) -> bool {
    isolate::write_all(fd, &(msg.len() as u32).to_le_bytes()) && isolate::write_all(fd, msg)
}

fn recv(fd: &OwnedFd) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    if !isolate::read_exact(fd, &mut len) {
        return None;
    }
    let mut buf = vec![0u8; u32::from_le_bytes(len) as usize];
    isolate::read_exact(fd, &mut buf).then_some(buf)
}

impl Worker {
    /// Fork W. `handler` turns one request into one reply, inside W.
    ///
    /// When this process is single-threaded (libFuzzer's before its threads
    /// start: the fuzz targets spawn W from their init hook), W is made by
    /// clone3 with exit_signal 0, a "clone child": besides leading its own
    /// process group, it is then considered only by waits with __WALL or
    /// __WCLONE, so F's inputs rarely need to avoid it. With other threads
    /// around, W is forked through glibc (whose atfork handlers keep malloc
    /// usable in the child) and has exit_signal SIGCHLD.
    pub fn spawn(handler: fn(&[u8]) -> String) -> Result<Worker, String> {
        let (req_r, req_w) = crate::sys::clone::pipe();
        let (rep_r, rep_w) = crate::sys::clone::pipe();
        let parent = std::process::id();
        let (rr, ww) = (req_r.as_raw_fd(), rep_w.as_raw_fd());
        let (theirs_w, theirs_r) = (req_w.as_raw_fd(), rep_r.as_raw_fd());
        let body = move || {
            // A subreaper that dies with F (and exits when F died first).
            if executor::isolate_self(Some(parent), false).is_err() {
                return 0;
            }
            // SAFETY: F's ends of the two pipes, copied into this process by
            // fork; nothing here owns or uses them.
            unsafe {
                libc::close(theirs_w);
                libc::close(theirs_r);
            }
            // Its own group (see Worker::spawn); set by F too.
            let _ = executor::own_process_group();
            let _ = isolate::block_all_signals();
            isolate::restore_sigchld_default();
            // SAFETY: our private copies of the request read end and the
            // reply write end; the other ends are closed below.
            let (req_r, rep_w) = unsafe {
                (
                    std::os::fd::FromRawFd::from_raw_fd(rr),
                    std::os::fd::FromRawFd::from_raw_fd(ww),
                )
            };
            worker_loop(handler, req_r, rep_w);
            0
        };
        let quiet = isolate::single_threaded();
        let pid = if quiet {
            // A private copy of a single-threaded process, like after fork():
            // the closure may allocate (sys::clone::Program::Run).
            let run =
                move || std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or(101);
            let req = crate::sys::clone::Clone3Request::new(0, 0);
            crate::sys::clone::clone3(&req, crate::sys::clone::Program::Run(Box::new(run)))
                .map(|sp| sp.pid)
                .map_err(|e| format!("clone3 worker: {e}"))?
        } else {
            isolate::fork_run(body).map_err(|e| format!("fork worker: {e}"))?
        };
        // W leads its own process group (set here and in W, whichever runs
        // first): the caller's waits on its own group never consider W, so
        // libFuzzer's process can execute inputs itself while W exists
        // (clone3::unseen_by_waits). Its children inherit W's group.
        // SAFETY: setpgid takes two integers; pid is our unreaped child, which
        // has not exec'd, so the call is allowed.
        // SAFETY: as above; getpgid takes one integer.
        let pgid = unsafe {
            libc::setpgid(pid, pid);
            libc::getpgid(pid)
        };
        drop(req_r);
        drop(rep_w);
        // Our unreaped child: the pid is still W's.
        let proc = Proc::open(pid).map_err(|e| format!("pidfd_open(worker): {e}"))?;
        Ok(Worker {
            pid,
            proc: Some(proc),
            sigchld: !quiet,
            pgid,
            to_w: req_w,
            from_w: rep_r,
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// W's process group (its own, see [`Worker::spawn`], unless setting
    /// it failed).
    pub fn pgid(&self) -> i32 {
        self.pgid
    }

    /// Whether W's exit_signal is SIGCHLD (else 0, see [`Worker::spawn`]).
    pub fn sigchld(&self) -> bool {
        self.sigchld
    }

    /// One request, one reply, within `timeout_ms`.
    pub fn call(
        &mut self,
        req: &[u8],
        timeout_ms: i32,
    ) -> Result<(String, Hygiene), WorkerFailure> {
        if !send(&self.to_w, req) {
            return Err(WorkerFailure::Died(self.reap()));
        }
        if !isolate::readable_within(&self.from_w, timeout_ms) {
            let mut report = vec![crate::sys::proc::stuck_report(self.pid)];
            for d in crate::sys::proc::descendants(self.pid) {
                report.push(crate::sys::proc::stuck_report(d));
            }
            return Err(WorkerFailure::Hang(report.join("\n")));
        }
        let Some(reply) = recv(&self.from_w) else {
            return Err(WorkerFailure::Died(self.reap()));
        };
        let env: Envelope = serde_json::from_slice(&reply)
            .map_err(|e| WorkerFailure::Died(format!("bad reply: {e}")))?;
        Ok((env.payload, env.hygiene))
    }

    /// Kill and reap W (by pidfd; `__WALL` inside: W may be a clone child
    /// with exit_signal 0); how it ended.
    fn reap(&mut self) -> String {
        let Some(p) = self.proc.take() else {
            return "already reaped".into();
        };
        let _ = p.kill();
        match p.reap() {
            WaitOutcome::Reported { event, .. } => format!("{event:?}"),
            other => other.to_string(),
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(p) = &self.proc {
            // Everything below W dies with it (SIGKILL through pidfds); what
            // W has not reaped goes to W's reaper, not to us.
            drop(executor::kill_descendants(p.pid()));
            self.reap();
        }
    }
}

fn worker_loop(handler: fn(&[u8]) -> String, req_r: OwnedFd, rep_w: OwnedFd) {
    let baseline = isolate::fd_count() as i64;
    let lowest = isolate::lowest_free_fd();
    while let Some(req) = recv(&req_r) {
        let payload = handler(&req);
        let mut h = Hygiene::default();
        // One /proc read when clean (the executors reap what they create).
        if !isolate::own_children().is_empty() {
            h.leftover_children = isolate::reap_all_children();
        }
        h.sigchld_ignored = isolate::sigchld_ignored();
        if h.sigchld_ignored {
            isolate::restore_sigchld_default();
        }
        isolate::drain_pending_signals();
        if isolate::lowest_free_fd() != lowest {
            h.fd_delta = isolate::fd_count() as i64 - baseline;
            if h.fd_delta == 0 {
                h.fd_delta = 1; // a leaked fd and a closed one: still a leak
            }
        }
        let reply = serde_json::to_vec(&Envelope {
            payload,
            hygiene: h,
        })
        .expect("serialise reply");
        if !send(&rep_w, &reply) {
            break;
        }
    }
}
