//! `runner exec`: boot a kernel the way `run` does (same kernel acquisition, accelerator choice,
//! watchdogs and console scan) and run one command inside it, in the current directory, with the
//! host's Rust toolchain on PATH. `runner exec --kernel wait-pid-6.12 -- cargo test --release`
//! is how the suite's own tests run in a VM.
//!
//! Exit status: the command's own; 127 when it cannot be found (no toolchain on the host for a
//! cargo/rustc command, or not found in the guest); 1 when it exited 0 but the kernel console
//! shows an oops, BUG or WARNING; 2 usage; 3 infrastructure (the VM did not start or boot, a
//! kernel panic, a watchdog, the VM gone before the command finished). The runner's last line on
//! stderr says which.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::gate::{EXIT_FAILURES, EXIT_INFRA};
use crate::paths::Paths;
use crate::profile::{Kind, Profile};
use crate::progress;
use crate::run::{self, RunOpts};
use crate::session::{self, GuestSession, Launcher};
use crate::template::{self, shell_quote};
use crate::vm::{self, Echo, VmEnd};

/// The whole-VM watchdog's default for `exec` (or the profile's vm.timeout_s when longer): a
/// whole `cargo test` runs far longer in a TCG guest than the case binary alone, since each
/// case re-executes a test binary read over 9p.
pub const EXEC_TIMEOUT_S: u64 = 3600;

/// The shell's "command not found".
pub const EXIT_NOT_FOUND: i32 = 127;

pub struct ExecOpts {
    pub command: Vec<String>,
    /// Log directory; default `<target>/exec/<profile>`.
    pub out: Option<PathBuf>,
    /// Extra guest environment, after (so over) the runner's.
    pub env: Vec<(String, String)>,
    /// More writable directories besides the target directory and the log directory.
    pub rwdirs: Vec<PathBuf>,
    /// Compile a `cargo test` command's tests on the host first (`--no-run`).
    pub host_build: bool,
    /// Kernel, accelerator and watchdog options, as `run` takes them.
    pub run: RunOpts,
}

/// The host's Rust toolchain, as directories for the front of the guest's PATH: the
/// toolchain's own `bin` (cargo, rustc, rustdoc: no rustup proxy, so no rustup state is needed
/// in the guest), then the directory cargo was found in (cargo subcommands such as cargo-fuzz).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toolchain {
    pub bins: Vec<PathBuf>,
}

/// Where the host's cargo is: `$CARGO` (set when the runner itself runs under cargo), else
/// `cargo` on PATH, else `$CARGO_HOME/bin/cargo`, else `~/.cargo/bin/cargo`.
pub fn locate_cargo(
    cargo_env: Option<PathBuf>,
    on_path: Option<PathBuf>,
    cargo_home: Option<PathBuf>,
    home: Option<PathBuf>,
) -> Option<PathBuf> {
    cargo_env
        .into_iter()
        .chain(on_path)
        .chain(cargo_home.map(|h| h.join("bin/cargo")))
        .chain(home.map(|h| h.join(".cargo/bin/cargo")))
        .find(|p| p.is_file())
}

/// The host toolchain, or what is missing.
pub fn host_toolchain(cwd: &Path) -> Result<Toolchain, String> {
    let var = |k: &str| std::env::var_os(k).map(PathBuf::from);
    let cargo = locate_cargo(
        var("CARGO"),
        crate::vng::which("cargo"),
        var("CARGO_HOME"),
        var("HOME"),
    )
    .ok_or_else(|| {
        "no Rust toolchain on the host: $CARGO is unset, cargo is not on PATH, and neither \
         $CARGO_HOME/bin/cargo nor ~/.cargo/bin/cargo exists (install one, e.g. with rustup)"
            .to_owned()
    })?;
    let cargo_dir = cargo.parent().map(Path::to_owned).unwrap_or_default();
    // rustc next to cargo (a rustup proxy follows the directory's rust-toolchain file).
    let rustc = [cargo_dir.join("rustc")]
        .into_iter()
        .chain(crate::vng::which("rustc"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "found cargo at {} but no rustc next to it or on PATH",
                cargo.display()
            )
        })?;
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .current_dir(cwd)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .ok_or_else(|| format!("`{} --print sysroot` failed", rustc.display()))?;
    let mut bins = vec![];
    if sysroot.join("bin/cargo").is_file() {
        bins.push(sysroot.join("bin"));
    }
    if !bins.contains(&cargo_dir) {
        bins.push(cargo_dir);
    }
    Ok(Toolchain { bins })
}

/// Whether the command is one of the toolchain's own (so a missing toolchain is its failure).
pub fn needs_toolchain(command: &[String]) -> bool {
    let prog = command.first().map(|c| {
        Path::new(c)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_owned()
    });
    matches!(
        prog.as_deref(),
        Some("cargo" | "rustc" | "rustdoc" | "rustup")
    ) || prog.is_some_and(|p| p.starts_with("cargo-"))
}

/// For `cargo [+toolchain] test ARGS [-- TEST-ARGS]`, the host command that compiles the same
/// tests without running them (`cargo test ARGS --no-run`): the guest then finds them fresh
/// instead of compiling under emulation. None for any other command.
pub fn host_prebuild(command: &[String]) -> Option<Vec<String>> {
    let prog = Path::new(command.first()?).file_name()?.to_str()?;
    if prog != "cargo" {
        return None;
    }
    let sub = if command.get(1)?.starts_with('+') {
        2
    } else {
        1
    };
    if command.get(sub)? != "test" {
        return None;
    }
    let end = command
        .iter()
        .position(|a| a == "--")
        .unwrap_or(command.len());
    let mut build = command[..end].to_vec();
    if build.iter().any(|a| a == "--no-run") {
        return None;
    }
    build.push("--no-run".into());
    Some(build)
}

/// What the guest script is to do.
pub struct GuestExec<'a> {
    pub cwd: &'a Path,
    pub command: &'a [String],
    /// Exported in order (later wins).
    pub env: &'a [(String, String)],
    /// Put before the guest's own PATH.
    pub path_prefix: &'a [PathBuf],
    /// Where the script writes the command's status (a number, `notfound` or `nocwd`).
    pub status_file: &'a Path,
}

/// The guest's shell script: start marker, environment, the command's existence checked (127
/// with a message naming it and the PATH), the command, its status into the status file, end
/// marker. The command's stderr joins its stdout so the kernel console (vng's stderr) carries
/// only kernel and vng lines and the console scan never sees the command's own words.
pub fn guest_script(g: &GuestExec) -> String {
    let q = |p: &Path| shell_quote(&p.display().to_string());
    let exports: Vec<String> = g
        .env
        .iter()
        .map(|(k, v)| format!("{k}={}; export {k}", shell_quote(v)))
        .collect();
    let prefix: Vec<String> = g
        .path_prefix
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    template::EXEC.render(
        &[
            ("STATUS_FILE", q(g.status_file)),
            ("CWD", q(g.cwd)),
            (
                "CWD_SHOWN",
                g.cwd
                    .display()
                    .to_string()
                    .replace(['"', '$', '`', '\\'], "?"),
            ),
            ("ENV_EXPORTS", exports.join("\n")),
            ("PATH_PREFIX", shell_quote(&prefix.join(":"))),
            ("COMMAND", template::shell_words(g.command)),
        ],
        &[("PATH_PREFIX", !g.path_prefix.is_empty())],
    )
}

/// What the status file said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestStatus {
    Code(i32),
    NotFound,
    NoCwd,
    /// No status file, or garbage in it: the script did not get there.
    Missing,
}

pub fn parse_status(text: Option<&str>) -> GuestStatus {
    match text.map(str::trim) {
        Some("notfound") => GuestStatus::NotFound,
        Some("nocwd") => GuestStatus::NoCwd,
        Some(t) => t
            .parse()
            .map(GuestStatus::Code)
            .unwrap_or(GuestStatus::Missing),
        None => GuestStatus::Missing,
    }
}

/// Everything the exit status depends on.
pub struct ExecFacts {
    pub end: VmEnd,
    /// [`vm::launch_failure`]'s words.
    pub launch_failure: Option<String>,
    pub panicked: bool,
    /// Console findings other than a panic (oops, BUG, WARNING, ...).
    pub findings: usize,
    pub status: GuestStatus,
    pub boot_watchdog_s: u64,
    pub total_watchdog_s: u64,
}

/// The runner's exit status and, when it is not simply the command's, why.
pub fn exit_status(f: &ExecFacts) -> (i32, Option<String>) {
    let infra = |m: String| (EXIT_INFRA, Some(m));
    if f.panicked {
        return infra("the kernel panicked (see console.log)".into());
    }
    if let Some(why) = &f.launch_failure {
        return infra(why.clone());
    }
    match f.end {
        VmEnd::BootTimeout => {
            return infra(format!(
                "the VM did not reach the guest script within {} s (boot watchdog)",
                f.boot_watchdog_s
            ))
        }
        VmEnd::Watchdog => {
            return infra(format!(
                "the VM watchdog ({} s) fired before the command finished (--vm-timeout)",
                f.total_watchdog_s
            ))
        }
        VmEnd::Exited => return infra("the VM exited before the command finished".into()),
        VmEnd::Completed => {}
    }
    match f.status {
        GuestStatus::Missing => infra("the guest script ended without the command's status".into()),
        GuestStatus::NoCwd => infra("the working directory is not visible in the guest".into()),
        GuestStatus::NotFound => (
            EXIT_NOT_FOUND,
            Some("the command was not found in the guest".into()),
        ),
        GuestStatus::Code(0) if f.findings > 0 => (
            EXIT_FAILURES,
            Some(format!(
                "the command succeeded but the kernel console shows {} finding(s) (see console.log)",
                f.findings
            )),
        ),
        GuestStatus::Code(c) => (
            c,
            (f.findings > 0).then(|| {
                format!(
                    "the kernel console also shows {} finding(s) (see console.log)",
                    f.findings
                )
            }),
        ),
    }
}

/// The cargo target directory: `$CARGO_TARGET_DIR` (relative to `cwd`), else the repository's.
fn target_dir(paths: &Paths, cwd: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) => cwd.join(t),
        None => paths.workspace.join("target"),
    }
}

/// The command as a shell would take it back: words with spaces or quotes quoted.
pub fn shown_command(command: &[String]) -> String {
    let plain = |a: &str| {
        !a.is_empty()
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    };
    command
        .iter()
        .map(|a| if plain(a) { a.clone() } else { shell_quote(a) })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `o.command` in a VM of `profile` (on the host for the host profile) and returns the
/// runner's exit status.
pub fn exec(profile: &Profile, paths: &Paths, o: &ExecOpts) -> i32 {
    match exec_inner(profile, paths, o) {
        Ok(code) => code,
        Err((code, m)) => {
            eprintln!("runner exec: {m}");
            code
        }
    }
}

/// A failure before or instead of the command: the exit status and the message.
type Fail = (i32, String);

fn exec_inner(profile: &Profile, paths: &Paths, o: &ExecOpts) -> Result<i32, Fail> {
    let started = Instant::now();
    let Ok(cwd) = std::env::current_dir().and_then(std::fs::canonicalize) else {
        return Err((EXIT_INFRA, "cannot read the current directory".into()));
    };
    let toolchain = toolchain_for(&o.command, &cwd)?;
    if o.host_build {
        build_on_host(&o.command, &cwd)?;
    }
    let (out, target) = log_and_target_dirs(profile, paths, &cwd, o)?;
    let prepared = if profile.kind == Kind::Host {
        None
    } else {
        Some(run::prepare(profile, paths, &o.run).map_err(|e| (EXIT_INFRA, format!("{e:#}")))?)
    };
    let status_file = out.join("exit.status");
    let tcg = prepared
        .as_ref()
        .is_some_and(|p| p.launcher().accel_name() == "tcg");
    let script = guest_script(&GuestExec {
        cwd: &cwd,
        command: &o.command,
        env: &guest_env(profile, o, tcg),
        path_prefix: toolchain.as_ref().map(|t| t.bins.as_slice()).unwrap_or(&[]),
        status_file: &status_file,
    });
    let rw = writable_dirs(&target, &out, &o.rwdirs);
    let launcher = prepared
        .as_ref()
        .map_or(Launcher::Host, run::Prepared::launcher);
    let session = GuestSession::new(launcher, &out, rw, Echo::Plain);
    let boot = launcher.boot_secs(o.run.boot_timeout);
    let total = o
        .run
        .vm_timeout
        .unwrap_or(EXEC_TIMEOUT_S.max(profile.vm.timeout_s));
    let accel = launcher.accel_name();
    let shown = shown_command(&o.command);
    progress!(
        "{}: `{shown}` in {} ({accel}, watchdog {total} s); logs in {}",
        profile.name,
        cwd.display(),
        out.display()
    );
    let run = session
        .run_script(
            &out.join("exec.sh"),
            &script,
            &session::watchdogs(boot, total),
        )
        .map_err(|e| (EXIT_INFRA, format!("{e:#}")))?;
    let facts = harvest_facts(&session, &out, &run, &status_file, (boot, total));
    let (code, why) = exit_status(&facts);
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .filter(|_| prepared.is_none())
        .or_else(|| prepared.as_ref().and_then(|p| p.artifact.release.clone()))
        .unwrap_or_default();
    let ran = format!("`{shown}` on {}", profile.name);
    let boot = run.boot_seconds;
    report_end(
        &ran,
        &release,
        accel,
        boot,
        started.elapsed().as_secs_f64(),
        code,
        why,
    );
    Ok(code)
}

/// What the run left: the console's findings (printed), the command's status, the watchdogs
/// `(boot, total)`.
fn harvest_facts(
    session: &GuestSession,
    out: &Path,
    run: &vm::VmRun,
    status_file: &Path,
    (boot, total): (u64, u64),
) -> ExecFacts {
    let h = session.harvest(out, run, 0, "exit.status");
    for f in &h.findings {
        progress!("! console {}: {}", f.kind, f.line);
    }
    ExecFacts {
        end: run.end,
        launch_failure: vm::launch_failure(run),
        panicked: h.panicked,
        findings: h.findings.iter().filter(|f| f.kind != "panic").count(),
        status: parse_status(std::fs::read_to_string(status_file).ok().as_deref()),
        boot_watchdog_s: boot,
        total_watchdog_s: total,
    }
}

/// The directories the guest may write: the cargo target directory, the log directory (when
/// not inside it) and the `--rwdir`s.
fn writable_dirs(target: &Path, out: &Path, extra: &[PathBuf]) -> Vec<PathBuf> {
    let mut rw = vec![target.to_owned()];
    if !out.starts_with(target) {
        rw.push(out.to_owned());
    }
    rw.extend(extra.iter().cloned());
    rw
}

/// The last line: what `ran` where (kernel release, accelerator, boot time), the exit status
/// after `secs` and why.
fn report_end(
    ran: &str,
    release: &str,
    accel: &str,
    boot_seconds: Option<f64>,
    secs: f64,
    code: i32,
    why: Option<String>,
) {
    eprintln!(
        "runner exec: {ran} ({}{accel}, boot {}): exit {code} after {secs:.1} s{}",
        if release.trim().is_empty() {
            String::new()
        } else {
            format!("{}, ", release.trim())
        },
        boot_seconds
            .map(|b| format!("{b:.1} s"))
            .unwrap_or_else(|| "not reached".into()),
        match why {
            Some(w) if code == EXIT_INFRA => format!(": infrastructure failure: {w}"),
            Some(w) => format!(": {w}"),
            None => " (the command's own status)".into(),
        }
    );
}

/// The host's toolchain for the guest's PATH; a cargo/rustc command without one is 127.
fn toolchain_for(command: &[String], cwd: &Path) -> Result<Option<Toolchain>, Fail> {
    match (host_toolchain(cwd), needs_toolchain(command)) {
        (Ok(t), _) => Ok(Some(t)),
        (Err(e), true) => Err((EXIT_NOT_FOUND, format!("{}: {e}", command[0]))),
        (Err(e), false) => {
            progress!("{e}; running without it");
            Ok(None)
        }
    }
}

/// A `cargo test` command's tests compiled on the host first (`--no-run`).
fn build_on_host(command: &[String], cwd: &Path) -> Result<(), Fail> {
    let Some(build) = host_prebuild(command) else {
        return Ok(());
    };
    progress!(
        "compiling on the host first: {} (--no-host-build skips this)",
        build.join(" ")
    );
    match Command::new(&build[0])
        .args(&build[1..])
        .current_dir(cwd)
        .status()
    {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err((
            s.code().unwrap_or(EXIT_INFRA),
            format!("the host build failed ({s}); nothing was booted"),
        )),
        Err(e) => Err((EXIT_NOT_FOUND, format!("{}: {e}", build[0]))),
    }
}

/// The log directory (emptied of the previous run's logs) and the cargo target directory,
/// both made and resolved.
fn log_and_target_dirs(
    profile: &Profile,
    paths: &Paths,
    cwd: &Path,
    o: &ExecOpts,
) -> Result<(PathBuf, PathBuf), Fail> {
    let target = target_dir(paths, cwd);
    let out = o
        .out
        .clone()
        .unwrap_or_else(|| target.join("exec").join(&profile.name));
    if let Err(e) = std::fs::create_dir_all(&out).and_then(|_| std::fs::create_dir_all(&target)) {
        return Err((EXIT_INFRA, format!("cannot create {}: {e}", out.display())));
    }
    let (Ok(out), Ok(target)) = (std::fs::canonicalize(&out), std::fs::canonicalize(&target))
    else {
        return Err((
            EXIT_INFRA,
            "cannot resolve the log or target directory".into(),
        ));
    };
    for f in ["console.log", "guest-output.log", "exit.status"] {
        let _ = std::fs::remove_file(out.join(f));
    }
    Ok((out, target))
}

/// Case timeouts multiplier in a TCG guest: there each case process of a `cargo test` run is
/// a re-exec or a fork of a test binary read over 9p, seconds under load, which the rows' own
/// timeouts (1 s for the hanging self-test rows, 5 s by default) do not allow for.
pub const TCG_TIMEOUT_MUL: &str = "10";

/// The guest's environment: HOME, the bit, offline cargo, the case timeout multiplier under
/// TCG, the host's cargo/rustup directories, then `--env` (later wins).
fn guest_env(profile: &Profile, o: &ExecOpts, tcg: bool) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        (
            "HOME".into(),
            std::env::var("HOME").unwrap_or_else(|_| "/root".into()),
        ),
        (
            protocol::env::CLONE_WAIT_PID_FLAG.into(),
            profile.clone_wait_pid_flag.clone(),
        ),
        // The guest has no network: cargo says so at once instead of retrying DNS.
        ("CARGO_NET_OFFLINE".into(), "true".into()),
    ];
    if tcg {
        env.push((
            protocol::env::WAITCONF_TIMEOUT_MUL.into(),
            TCG_TIMEOUT_MUL.into(),
        ));
    }
    for k in ["CARGO_HOME", "RUSTUP_HOME", "CARGO_TARGET_DIR"] {
        if let Ok(v) = std::env::var(k) {
            env.push((k.into(), v));
        }
    }
    env.extend(o.env.iter().cloned());
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::{END_MARKER, START_MARKER};

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    #[test]
    fn cargo_test_is_compiled_on_the_host_first() {
        assert_eq!(
            host_prebuild(&s(&["cargo", "test", "--release"])),
            Some(s(&["cargo", "test", "--release", "--no-run"]))
        );
        assert_eq!(
            host_prebuild(&s(&[
                "/root/.cargo/bin/cargo",
                "+stable",
                "test",
                "-p",
                "cases",
                "--",
                "--exact",
                "x"
            ])),
            Some(s(&[
                "/root/.cargo/bin/cargo",
                "+stable",
                "test",
                "-p",
                "cases",
                "--no-run"
            ]))
        );
        assert_eq!(host_prebuild(&s(&["cargo", "test", "--no-run"])), None);
        assert_eq!(host_prebuild(&s(&["cargo", "build"])), None);
        assert_eq!(host_prebuild(&s(&["sh", "-c", "cargo test"])), None);
        assert_eq!(host_prebuild(&s(&["cargo"])), None);
    }

    #[test]
    fn commands_are_shown_requoted() {
        assert_eq!(
            shown_command(&s(&["sh", "-c", "echo c > /proc/sysrq-trigger"])),
            "sh -c 'echo c > /proc/sysrq-trigger'"
        );
        assert_eq!(
            shown_command(&s(&[
                "cargo", "test", "-p", "cases", "--", "--exact", "a::b"
            ])),
            "cargo test -p cases -- --exact a::b"
        );
    }

    #[test]
    fn toolchain_commands() {
        assert!(needs_toolchain(&s(&["cargo", "test"])));
        assert!(needs_toolchain(&s(&["/usr/bin/rustc", "-V"])));
        assert!(needs_toolchain(&s(&["cargo-fuzz"])));
        assert!(!needs_toolchain(&s(&["sh", "-c", "uname -r"])));
        assert!(!needs_toolchain(&[]));
    }

    #[test]
    fn cargo_is_looked_for_in_order() {
        let d = tempfile::tempdir().unwrap();
        let home = d.path().join("home");
        let cargo_home = d.path().join("ch");
        std::fs::create_dir_all(home.join(".cargo/bin")).unwrap();
        std::fs::create_dir_all(cargo_home.join("bin")).unwrap();
        assert_eq!(
            locate_cargo(None, None, Some(cargo_home.clone()), Some(home.clone())),
            None
        );
        std::fs::write(home.join(".cargo/bin/cargo"), "").unwrap();
        assert_eq!(
            locate_cargo(None, None, Some(cargo_home.clone()), Some(home.clone())),
            Some(home.join(".cargo/bin/cargo"))
        );
        std::fs::write(cargo_home.join("bin/cargo"), "").unwrap();
        assert_eq!(
            locate_cargo(None, None, Some(cargo_home.clone()), Some(home.clone())),
            Some(cargo_home.join("bin/cargo"))
        );
        let env = d.path().join("cargo-from-env");
        assert_eq!(
            locate_cargo(Some(env.clone()), None, None, None),
            None,
            "a $CARGO that does not exist"
        );
        std::fs::write(&env, "").unwrap();
        assert_eq!(
            locate_cargo(Some(env.clone()), None, Some(cargo_home), Some(home)),
            Some(env)
        );
    }

    #[test]
    fn this_hosts_toolchain_has_cargo_and_rustc_first_on_path() {
        let t = host_toolchain(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
        let first = &t.bins[0];
        assert!(first.join("cargo").is_file(), "{t:?}");
        assert!(first.join("rustc").is_file(), "{t:?}");
    }

    #[test]
    fn guest_script_sets_up_and_checks_the_command() {
        let env = vec![
            ("HOME".to_owned(), "/root".to_owned()),
            ("CLONE_WAIT_PID_FLAG".to_owned(), "0x10000000000".to_owned()),
        ];
        let prefix = vec![PathBuf::from("/tc/bin"), PathBuf::from("/root/.cargo/bin")];
        let cmd = s(&["sh", "-c", "echo 'hi'; exit 7"]);
        let text = guest_script(&GuestExec {
            cwd: Path::new("/work/repo"),
            command: &cmd,
            env: &env,
            path_prefix: &prefix,
            status_file: Path::new("/work/repo/target/exec/x/exit.status"),
        });
        assert!(text.find(START_MARKER) < text.find("cd '/work/repo'"));
        assert!(text.contains("CLONE_WAIT_PID_FLAG='0x10000000000'; export CLONE_WAIT_PID_FLAG"));
        assert!(text.contains("PATH='/tc/bin:/root/.cargo/bin':\"$PATH\""));
        assert!(text.contains("set -- 'sh' '-c' 'echo '\\''hi'\\''; exit 7'"));
        assert!(text.contains("done_with $?"));
    }

    /// Runs a generated script with the host's sh: the status file and output it leaves.
    fn run_script(cwd: &Path, cmd: &[String]) -> (GuestStatus, String) {
        let d = tempfile::tempdir().unwrap();
        let status = d.path().join("exit.status");
        let text = guest_script(&GuestExec {
            cwd,
            command: cmd,
            env: &[("WC_X".to_owned(), "it's".to_owned())],
            path_prefix: &[],
            status_file: &status,
        });
        let out = Command::new("sh").arg("-c").arg(&text).output().unwrap();
        let st = parse_status(std::fs::read_to_string(&status).ok().as_deref());
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(stdout.trim_end().ends_with(END_MARKER), "{stdout}");
        (st, stdout)
    }

    #[test]
    fn guest_script_statuses_on_the_host_shell() {
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        let (st, out) = run_script(here, &s(&["sh", "-c", "echo \"$WC_X\" >&2; pwd; exit 7"]));
        assert_eq!(st, GuestStatus::Code(7));
        assert!(out.contains("it's"), "stderr joins stdout: {out}");
        assert!(out.contains(&here.display().to_string()), "{out}");
        let (st, out) = run_script(here, &s(&["/nonexistent", "x"]));
        assert_eq!(st, GuestStatus::NotFound);
        assert!(
            out.contains("/nonexistent: command not found in the guest"),
            "{out}"
        );
        let (st, out) = run_script(&here.join("no-such-dir"), &s(&["true"]));
        assert_eq!(st, GuestStatus::NoCwd);
        assert!(out.contains("cannot enter"), "{out}");
    }

    fn facts(end: VmEnd, status: GuestStatus) -> ExecFacts {
        ExecFacts {
            end,
            launch_failure: None,
            panicked: false,
            findings: 0,
            status,
            boot_watchdog_s: 180,
            total_watchdog_s: 900,
        }
    }

    #[test]
    fn exit_status_mapping() {
        use GuestStatus::*;
        let code = |f: &ExecFacts| exit_status(f).0;
        assert_eq!(exit_status(&facts(VmEnd::Completed, Code(0))), (0, None));
        assert_eq!(
            exit_status(&facts(VmEnd::Completed, Code(101))),
            (101, None)
        );
        assert_eq!(code(&facts(VmEnd::Completed, NotFound)), EXIT_NOT_FOUND);
        assert_eq!(code(&facts(VmEnd::Completed, NoCwd)), EXIT_INFRA);
        assert_eq!(code(&facts(VmEnd::Completed, Missing)), EXIT_INFRA);
        for end in [VmEnd::BootTimeout, VmEnd::Watchdog, VmEnd::Exited] {
            assert_eq!(code(&facts(end, Code(0))), EXIT_INFRA, "{end:?}");
        }
        let panic = ExecFacts {
            panicked: true,
            ..facts(VmEnd::Completed, Code(0))
        };
        let (c, why) = exit_status(&panic);
        assert_eq!(c, EXIT_INFRA);
        assert!(why.unwrap().contains("panicked"));
        let launch = ExecFacts {
            launch_failure: Some("virtme-ng failed to start the VM (vng exit 1): boom".into()),
            ..facts(VmEnd::Exited, Missing)
        };
        let (c, why) = exit_status(&launch);
        assert_eq!((c, why.unwrap().contains("boom")), (EXIT_INFRA, true));
        let oops = ExecFacts {
            findings: 2,
            ..facts(VmEnd::Completed, Code(0))
        };
        assert_eq!(
            code(&oops),
            EXIT_FAILURES,
            "a clean exit over a kernel oops"
        );
        let oops_fail = ExecFacts {
            findings: 1,
            ..facts(VmEnd::Completed, Code(101))
        };
        let (c, why) = exit_status(&oops_fail);
        assert_eq!(c, 101, "the command's own failure wins");
        assert!(why.unwrap().contains("also shows"));
        assert_eq!(parse_status(Some("12\n")), Code(12));
        assert_eq!(parse_status(Some("")), Missing);
        assert_eq!(parse_status(None), Missing);
    }
}
