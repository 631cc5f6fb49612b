//! Gating: the verdict and exit code of a run.
//!
//! `strict`: any fail/broken case, console finding, feature-expectation mismatch or taint change
//! fails the run. `snapshot`: the run fails only when its case -> status matrix differs from the
//! reviewed insta snapshot under `runner/snapshots/<profile>.snap` (like LKFT's known-issues
//! lists: a known failure that stays a failure is not a regression). Infrastructure failures
//! (fetch, build, boot, kernel panic) are exit 3 under both gates.

use std::path::Path;

use clap::ValueEnum;

pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILURES: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_INFRA: i32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Gate {
    /// Fail on any fail/broken case, kernel finding, taint change or feature mismatch.
    Strict,
    /// Fail only when the result matrix differs from the reviewed snapshot.
    Snapshot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotOutcome {
    Matched,
    /// Differs from the reviewed snapshot (or there is none yet).
    Differs,
    /// Written in place because `--accept` was given.
    Accepted,
}

/// Everything the verdict depends on, already boiled down.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub infrastructure_errors: usize,
    pub bad_cases: usize,
    pub console_findings: usize,
    pub problems: usize,
    pub snapshot: Option<SnapshotOutcome>,
}

/// Maps a run's facts to (verdict word, exit code).
pub fn decide(gate: Gate, f: &Facts) -> (&'static str, i32) {
    if f.infrastructure_errors > 0 {
        return ("infrastructure-failure", EXIT_INFRA);
    }
    match gate {
        Gate::Strict => {
            if f.bad_cases + f.console_findings + f.problems > 0 {
                ("failures", EXIT_FAILURES)
            } else {
                ("pass", EXIT_OK)
            }
        }
        Gate::Snapshot => match f.snapshot {
            Some(SnapshotOutcome::Matched) => ("as-reviewed", EXIT_OK),
            Some(SnapshotOutcome::Accepted) => ("snapshot-accepted", EXIT_OK),
            Some(SnapshotOutcome::Differs) | None => ("regression", EXIT_FAILURES),
        },
    }
}

/// Must be called once, before the first [`check_snapshot`], while the process is still
/// single-threaded: insta reads its configuration from the environment once per process.
pub fn configure_insta(workspace: &Path, accept: bool) {
    // Edition 2021: set_var is safe; no other thread exists yet (the runner calls this first
    // thing in main), so no concurrent getenv can race with it.
    std::env::set_var("INSTA_WORKSPACE_ROOT", workspace);
    if accept {
        std::env::set_var("INSTA_UPDATE", "always");
    }
}

/// Compares `matrix` with the reviewed snapshot `<snapshot_dir>/<profile>.snap` using insta.
/// On a difference insta prints the diff to stderr and, outside CI, leaves
/// `<profile>.snap.new` for `cargo insta review` (or rerun with `--accept`).
pub fn check_snapshot(snapshot_dir: &Path, profile: &str, matrix: &str) -> SnapshotOutcome {
    let accept = std::env::var("INSTA_UPDATE").is_ok_and(|v| v == "always");
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(snapshot_dir);
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.set_description(format!(
        "wait-conformance result matrix (case: status) of kernel profile {profile}; \
         reviewed and committed. Update: runner run --kernel {profile} --gate snapshot --accept"
    ));
    // insta reports a mismatch by panicking (it is built for #[test]s). Catch that one panic
    // and keep the default hook quiet meanwhile; insta has already printed its diff.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    // AssertUnwindSafe: nothing observed after a caught panic is left half-updated; `settings`
    // is dropped right after and insta keeps no state we read.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        settings.bind(|| insta::assert_snapshot!(profile.to_owned(), matrix));
    }));
    std::panic::set_hook(hook);
    match (result.is_ok(), accept) {
        (true, true) => SnapshotOutcome::Accepted,
        (true, false) => SnapshotOutcome::Matched,
        (false, _) => SnapshotOutcome::Differs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_mapping() {
        let clean = Facts::default();
        assert_eq!(decide(Gate::Strict, &clean), ("pass", 0));
        let failing = Facts {
            bad_cases: 2,
            ..Facts::default()
        };
        assert_eq!(decide(Gate::Strict, &failing).1, EXIT_FAILURES);
        let finding = Facts {
            console_findings: 1,
            ..Facts::default()
        };
        assert_eq!(decide(Gate::Strict, &finding).1, EXIT_FAILURES);
        let problem = Facts {
            problems: 1,
            ..Facts::default()
        };
        assert_eq!(decide(Gate::Strict, &problem).1, EXIT_FAILURES);
        let infra = Facts {
            infrastructure_errors: 1,
            bad_cases: 3,
            ..Facts::default()
        };
        assert_eq!(decide(Gate::Strict, &infra).1, EXIT_INFRA);
        assert_eq!(decide(Gate::Snapshot, &infra).1, EXIT_INFRA);
    }

    #[test]
    fn snapshot_gate_ignores_known_failures() {
        let known = Facts {
            bad_cases: 2,
            console_findings: 1,
            snapshot: Some(SnapshotOutcome::Matched),
            ..Facts::default()
        };
        assert_eq!(decide(Gate::Snapshot, &known), ("as-reviewed", 0));
        let changed = Facts {
            snapshot: Some(SnapshotOutcome::Differs),
            ..Facts::default()
        };
        assert_eq!(decide(Gate::Snapshot, &changed), ("regression", 1));
        assert_eq!(
            decide(Gate::Snapshot, &Facts::default()).1,
            1,
            "no comparison is no pass"
        );
        let accepted = Facts {
            snapshot: Some(SnapshotOutcome::Accepted),
            ..Facts::default()
        };
        assert_eq!(decide(Gate::Snapshot, &accepted).1, 0);
    }

    #[test]
    fn snapshot_match_and_mismatch() {
        // The committed fixture runner/src/snapshots/gate-fixture.snap holds "a::b: pass\n".
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/snapshots");
        let first = check_snapshot(&dir, "gate-fixture", "a::b: pass\n");
        if std::env::var("INSTA_UPDATE").is_ok_and(|v| v == "always") {
            assert_eq!(first, SnapshotOutcome::Accepted);
            return; // an accepting run would rewrite the fixture with the mismatching text
        }
        assert_eq!(first, SnapshotOutcome::Matched);
        let outcome = check_snapshot(&dir, "gate-fixture", "a::b: fail\n");
        let _ = std::fs::remove_file(dir.join("gate-fixture.snap.new"));
        assert_eq!(outcome, SnapshotOutcome::Differs);
    }
}
