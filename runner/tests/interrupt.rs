//! A SIGTERM (or Ctrl-C's SIGINT) to the runner while a VM runs: the VM's process group is
//! killed, not left running, no further VM starts, the reports are written, and the runner says
//! so and exits 128 + the signal. The VM is a fake
//! `vng` in a fake virtme-ng venv that starts a long-lived "QEMU" child and waits; a FIFO tells
//! the test that child's pid (no sleeps).

use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn script(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn mkfifo(path: &Path) {
    assert!(Command::new("mkfifo").arg(path).status().unwrap().success());
}

/// Writes what the fake run needs beside the vng script (a QEMU on PATH, a case binary that
/// lists `cases`, a kernel image) and starts `runner run` on it under the cache in `d`.
fn start_runner(d: &Path, cases: &[&str]) -> std::process::Child {
    script(&d.join("bin/qemu-system-x86_64"), "#!/bin/sh\nexit 0\n");
    let list: String = cases
        .iter()
        .map(|c| format!("echo '{c}: test'; "))
        .collect();
    script(
        &d.join("cases"),
        &format!(
            "#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = --list ] && {{ {list}exit 0; }}; done\nexit 0\n"
        ),
    );
    std::fs::write(d.join("bzImage"), [0u8; 4096]).unwrap();
    let path = format!(
        "{}:{}",
        d.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new(env!("CARGO_BIN_EXE_runner"))
        .args([
            "run",
            "--no-build",
            "--clone-wait-pid-flag",
            "0x10000000000",
        ])
        .arg("--kernel-image")
        .arg(d.join("bzImage"))
        .arg("--cases-bin")
        .arg(d.join("cases"))
        .arg("--out")
        .arg(d.join("out"))
        .env("WAITCONF_CACHE", d.join("cache"))
        .env("PATH", path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// What the fake vng wrote into the FIFO (opening it blocks until the writer opens it).
fn read_fifo(path: &Path) -> String {
    let mut text = String::new();
    std::fs::File::open(path)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    text
}

/// Sends `sig` to the runner and returns its exit code and stderr.
fn interrupt(
    mut runner: std::process::Child,
    sig: rustix::process::Signal,
) -> (Option<i32>, String) {
    rustix::process::kill_process(rustix::process::Pid::from_child(&runner), sig).unwrap();
    let status = runner.wait().unwrap();
    let mut err = String::new();
    runner
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code(), err)
}

fn interrupted_by(sig: rustix::process::Signal, want_code: i32, name: &str) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fifo = d.join("qemu-pid");
    mkfifo(&fifo);
    // `runner` looks for the vng of its venv under the cache, and for QEMU on PATH.
    script(
        &d.join("cache/venv-virtme-ng-1.42/bin/vng"),
        &format!(
            "#!/bin/sh\nsleep 1000 &\necho $! > '{}'\nwait\n",
            fifo.display()
        ),
    );
    // The cache is new: the first vng the runner starts is its KVM probe (a VM too). That is
    // the one killed; the run's own VM, next, must then be refused.
    let runner = start_runner(d, &["g::one::hidden"]);
    let pid = read_fifo(&fifo);
    let qemu = rustix::process::Pid::from_raw(pid.trim().parse().unwrap()).unwrap();
    let qemu_fd = rustix::process::pidfd_open(qemu, rustix::process::PidfdFlags::empty()).unwrap();
    // Should an assertion fail, the fake QEMU is not left behind.
    let _reap = KillOnDrop(qemu);
    let (code, err) = interrupt(runner, sig);
    assert_eq!(code, Some(want_code), "{err}");
    assert!(
        err.contains(&format!("runner: {name}: killed 1 running VM(s)")),
        "{err}"
    );
    // What was done is written: the reports, with the case not run.
    assert!(d.join("out/results.json").is_file(), "{err}");
    assert!(err.contains("not starting a VM"), "{err}");
    // The fake QEMU was SIGKILLed with its group: its pidfd polls readable (it has exited).
    let fd = qemu_fd.as_fd();
    let mut fds = [rustix::event::PollFd::new(
        &fd,
        rustix::event::PollFlags::IN,
    )];
    let ten = rustix::event::Timespec {
        tv_sec: Duration::from_secs(10).as_secs() as i64,
        tv_nsec: 0,
    };
    let ready = rustix::event::poll(&mut fds, Some(&ten)).unwrap();
    assert_eq!(
        ready, 1,
        "the VM's QEMU child {pid} is still running: {err}"
    );
}

struct KillOnDrop(rustix::process::Pid);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = rustix::process::kill_process(self.0, rustix::process::Signal::KILL);
    }
}

#[test]
fn sigterm_kills_the_running_vm() {
    interrupted_by(rustix::process::Signal::TERM, 143, "SIGTERM");
}

#[test]
fn sigint_kills_the_running_vm() {
    interrupted_by(rustix::process::Signal::INT, 130, "SIGINT");
}

/// The run's own VM reports one of its two cases, then is interrupted: results.json keeps the
/// reported case as it came back and counts the other as not run. The fake vng fails the KVM
/// probe at once (the runner then uses TCG), and in the run's VM (the one given a run.sh)
/// writes the first case's record where the guest would, then tells the test and waits.
#[test]
fn an_interrupted_run_keeps_the_cases_already_reported() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let fifo = d.join("reported");
    mkfifo(&fifo);
    let env = r#"{"kind":"env","kernel_release":"6.12.0-fake","clone_wait_pid_flag":"0x10000000000","feature":"present","feature_reason":"fake"}"#;
    let case =
        r#"{"kind":"case","name":"g::one::hidden","status":"pass","detail":"","duration_ms":1}"#;
    script(
        &d.join("cache/venv-virtme-ng-1.42/bin/vng"),
        &format!(
            r#"#!/bin/sh
run=
for a in "$@"; do case "$a" in *run.sh*) run=$a;; esac; done
[ -n "$run" ] || exit 1
g=${{run#sh \'}}; g=$(dirname "$g")
echo '{env}' >> "$g/cases.jsonl"
echo '{case}' >> "$g/cases.jsonl"
sleep 1000 &
echo $! > '{fifo}'
wait
"#,
            fifo = fifo.display()
        ),
    );
    let runner = start_runner(d, &["g::one::hidden", "g::two::plain"]);
    let pid = read_fifo(&fifo);
    let _reap = KillOnDrop(rustix::process::Pid::from_raw(pid.trim().parse().unwrap()).unwrap());
    let (code, err) = interrupt(runner, rustix::process::Signal::TERM);
    assert_eq!(code, Some(143), "{err}");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("out/results.json")).unwrap())
            .unwrap();
    let cases = results["cases"].as_array().unwrap();
    let one = cases
        .iter()
        .find(|c| c["name"] == "g::one::hidden")
        .unwrap_or_else(|| panic!("the reported case is gone: {results}"));
    assert_eq!(one["status"], "pass", "{results}");
    assert!(
        !cases
            .iter()
            .any(|c| c["name"] == "g::two::plain" && c["status"] == "pass"),
        "{results}"
    );
    // The VM the runner killed is named as such (not as a VM that failed to start, though it
    // printed no boot), and none starts after it.
    let errors = results["infrastructure_errors"].to_string();
    assert!(
        errors.contains("VM 0: killed by the runner on SIGTERM; 1 case(s) not run"),
        "{errors}"
    );
    assert!(!errors.contains("VM 1"), "{errors}");
}
