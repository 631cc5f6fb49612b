//! Gating: the verdict and exit code of a run.
//!
//! `strict`: any fail/broken case, console finding, feature-expectation mismatch or taint change
//! fails the run. `snapshot`: the run fails only when its case -> status matrix differs from the
//! reviewed insta snapshot under `runner/snapshots/<profile>.snap` (like LKFT's known-issues
//! lists: a known failure that stays a failure is not a regression). Infrastructure failures
//! (fetch, build, boot, kernel panic) are exit 3 under both gates.
//!
//! The snapshot comparison is a plain file comparison, not insta: insta is built for `#[test]`s
//! (it reports a mismatch by panicking and reads its settings from the environment once per
//! process), and driving it at run time took a caught panic and `set_var`. The gate keeps
//! insta's `.snap` format byte for byte (a `---` YAML header with `source` and `description`,
//! then the matrix), so the reviewed snapshots are still insta's: `cargo insta review` still
//! reviews a `<profile>.snap.new`, and the comparison is insta's too (the text after the
//! header, trailing whitespace and CRLF normalised). A difference is shown as a unified diff
//! (the `similar` crate, insta's own differ); `--accept` rewrites the `.snap`. The runner's unit
//! tests keep using insta as it is meant to be used.

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

/// The `source` an accepted snapshot names (the file that writes it, as insta recorded it).
const SNAPSHOT_SOURCE: &str = "runner/src/gate.rs";

/// The `.snap` file text for `matrix`: insta's header and the normalised matrix.
pub fn snapshot_file(profile: &str, matrix: &str) -> String {
    let description = format!(
        "wait-conformance result matrix (case: status) of kernel profile {profile}; \
         reviewed and committed. Update: runner run --kernel {profile} --gate snapshot --accept"
    );
    format!(
        "---\nsource: {SNAPSHOT_SOURCE}\ndescription: {}\n---\n{}\n",
        serde_json::to_string(&description).expect("a string serialises"),
        normalise(matrix)
    )
}

/// What insta compares: the text after the header's closing `---` line.
fn snapshot_body(file: &str) -> &str {
    let Some(rest) = file.strip_prefix("---\n") else {
        return file;
    };
    match rest.find("\n---\n") {
        Some(i) => &rest[i + 5..],
        None => rest.strip_suffix("\n---").map_or(rest, |_| ""),
    }
}

/// insta's normalisation of text snapshots: no trailing whitespace, LF line ends.
fn normalise(text: &str) -> String {
    text.trim_end().replace("\r\n", "\n")
}

/// Compares `matrix` with the reviewed snapshot `<snapshot_dir>/<profile>.snap`. On a
/// difference the diff goes to stderr and, outside CI (`$CI` unset, as insta decides),
/// `<profile>.snap.new` is left for `cargo insta review` (or rerun with `--accept`). With
/// `accept` the snapshot is written instead (and counts as accepted whether or not it changed).
pub fn check_snapshot(
    snapshot_dir: &Path,
    profile: &str,
    matrix: &str,
    accept: bool,
) -> SnapshotOutcome {
    let path = snapshot_dir.join(format!("{profile}.snap"));
    let reviewed = std::fs::read_to_string(&path).ok();
    let body = reviewed.as_deref().map(|t| normalise(snapshot_body(t)));
    let now = normalise(matrix);
    let file = snapshot_file(profile, matrix);
    let new_path = snapshot_dir.join(format!("{profile}.snap.new"));
    if accept {
        if reviewed.as_deref() != Some(file.as_str()) {
            if let Err(e) =
                std::fs::create_dir_all(snapshot_dir).and_then(|_| std::fs::write(&path, &file))
            {
                eprintln!("runner: cannot write {}: {e}", path.display());
                return SnapshotOutcome::Differs;
            }
            eprintln!("runner: snapshot {} written", path.display());
        }
        let _ = std::fs::remove_file(&new_path);
        return SnapshotOutcome::Accepted;
    }
    if body.as_deref() == Some(now.as_str()) {
        return SnapshotOutcome::Matched;
    }
    eprintln!("{}", snapshot_diff(&path, body.as_deref(), &now));
    if std::env::var_os("CI").is_none() {
        match std::fs::write(&new_path, &file) {
            Ok(()) => eprintln!(
                "runner: this run's matrix is in {} (cargo insta review, or --accept)",
                new_path.display()
            ),
            Err(e) => eprintln!("runner: cannot write {}: {e}", new_path.display()),
        }
    }
    SnapshotOutcome::Differs
}

/// A shard's check (`run --shard I/N --gate snapshot`): `matrix` against the rows of the
/// reviewed snapshot that `keep` selects (the shard's part; see [`crate::shard::gate_snapshot`]).
/// Nothing is written: a shard's matrix is not the profile's, and `--accept` is the merge's.
pub fn check_snapshot_part(
    snapshot_dir: &Path,
    profile: &str,
    matrix: &str,
    keep: impl Fn(&str) -> bool,
) -> SnapshotOutcome {
    let path = snapshot_dir.join(format!("{profile}.snap"));
    let Ok(reviewed) = std::fs::read_to_string(&path) else {
        eprintln!("{}", snapshot_diff(&path, None, &normalise(matrix)));
        return SnapshotOutcome::Differs;
    };
    let body = normalise(snapshot_body(&reviewed));
    let part = body
        .lines()
        .filter(|l| keep(l))
        .collect::<Vec<_>>()
        .join("\n");
    let now = normalise(matrix);
    if part == now {
        return SnapshotOutcome::Matched;
    }
    eprintln!("{}", snapshot_diff(&path, Some(&part), &now));
    SnapshotOutcome::Differs
}

/// The unified diff of the reviewed matrix (None: no snapshot yet) against this run's.
fn snapshot_diff(path: &Path, reviewed: Option<&str>, now: &str) -> String {
    let Some(old) = reviewed else {
        return format!(
            "runner: no reviewed snapshot {} yet; this run's matrix:\n{now}",
            path.display()
        );
    };
    let (old, now) = (format!("{old}\n"), format!("{now}\n"));
    let diff = similar::TextDiff::from_lines(&old, &now);
    format!(
        "runner: the result matrix differs from {}:\n{}",
        path.display(),
        diff.unified_diff()
            .context_radius(2)
            .header("reviewed", "this run")
    )
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
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/snapshots");
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        std::fs::copy(
            fixture.join("gate-fixture.snap"),
            dir.join("gate-fixture.snap"),
        )
        .unwrap();
        let first = check_snapshot(dir, "gate-fixture", "a::b: pass\n", false);
        assert_eq!(first, SnapshotOutcome::Matched);
        let outcome = check_snapshot(dir, "gate-fixture", "a::b: fail\n", false);
        assert_eq!(outcome, SnapshotOutcome::Differs);
        if std::env::var_os("CI").is_none() {
            let new = std::fs::read_to_string(dir.join("gate-fixture.snap.new")).unwrap();
            assert!(new.ends_with("---\na::b: fail\n"), "{new}");
        }
        assert_eq!(
            check_snapshot(dir, "gate-fixture", "a::b: fail\n", true),
            SnapshotOutcome::Accepted
        );
        assert!(!dir.join("gate-fixture.snap.new").exists());
        assert_eq!(
            check_snapshot(dir, "gate-fixture", "a::b: fail\n", false),
            SnapshotOutcome::Matched
        );
        assert_eq!(
            check_snapshot(dir, "none-yet", "a::b: pass\n", false),
            SnapshotOutcome::Differs
        );
    }

    #[test]
    fn snapshot_files_are_written_as_insta_wrote_them() {
        // Every reviewed snapshot, re-rendered from its own matrix, is byte-identical: an
        // --accept of an unchanged matrix leaves the file as it is.
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut n = 0;
        for dir in [root.join("snapshots"), root.join("src/snapshots")] {
            for e in std::fs::read_dir(&dir).unwrap().flatten() {
                let name = e.file_name().into_string().unwrap();
                let Some(profile) = name.strip_suffix(".snap") else {
                    continue;
                };
                let text = std::fs::read_to_string(e.path()).unwrap();
                if !text.contains("source: runner/src/gate.rs") {
                    continue; // the report tests' own insta snapshots
                }
                assert_eq!(snapshot_file(profile, snapshot_body(&text)), text, "{name}");
                n += 1;
            }
        }
        assert!(n >= 4, "the three profiles' snapshots and the fixture: {n}");
    }

    #[test]
    fn a_difference_is_a_unified_diff() {
        let d = snapshot_diff(
            Path::new("/s/p.snap"),
            Some("a: pass\nb: pass"),
            "a: pass\nb: fail",
        );
        assert!(d.contains("--- reviewed\n+++ this run\n"), "{d}");
        assert!(d.contains("-b: pass\n+b: fail\n"), "{d}");
        assert!(
            snapshot_diff(Path::new("/s/p.snap"), None, "a: pass").contains("no reviewed snapshot")
        );
    }
}
