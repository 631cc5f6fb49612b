//! `runner merge DIR... --out DIR`: the reports of the shards of one run
//! ([`crate::shard`]) put back together into one results.json, results.tap, results.ktap and
//! junit.xml, judged by the gate as one run. The merged case -> status matrix is the one an
//! unsharded run of the same selection gives.
//!
//! The merge refuses (exit [`EXIT_REFUSED`], before writing anything) reports that are not one
//! run cut into shards: a report without a shard record, shards of different cuts or
//! selections, a shard given twice or a case in two shards (overlap), a shard of 1..N absent
//! (missing), or shards of different kernels (profile, kernel release, source, bit or
//! expectation).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::gate::Gate;
use crate::report::{Environment, RunResults};
use crate::shard::ShardRecord;

/// Exit code of a refused merge: the inputs are not the shards of one run.
pub const EXIT_REFUSED: i32 = 4;

/// One input of a merged report, as its results.json records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergedFrom {
    pub dir: String,
    pub shard: ShardRecord,
    pub verdict: String,
    pub exit_code: i32,
}

/// Why a merge was refused, or could not read its inputs.
#[derive(Debug)]
pub enum MergeError {
    /// Unreadable or malformed input (exit 2).
    Input(String),
    /// The inputs do not fit together (exit [`EXIT_REFUSED`]).
    Refused(String),
}

impl std::fmt::Display for MergeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MergeError::Input(m) | MergeError::Refused(m) => f.write_str(m),
        }
    }
}

/// Reads `<dir>/results.json` (or the file itself).
pub fn load(path: &Path) -> Result<RunResults> {
    let file = if path.is_dir() {
        path.join("results.json")
    } else {
        path.to_owned()
    };
    let text = std::fs::read_to_string(&file).with_context(|| file.display().to_string())?;
    serde_json::from_str(&text).with_context(|| file.display().to_string())
}

/// What must be equal for two shards to be of one kernel.
fn kernel_key(e: &Environment) -> [(&'static str, &str); 5] {
    [
        ("profile", e.profile.as_str()),
        ("kernel release", e.kernel_release.as_str()),
        ("kernel source", e.kernel_source.as_str()),
        ("CLONE_WAIT_PID bit", e.clone_wait_pid_flag.as_str()),
        ("expected feature", e.expected_feature.as_str()),
    ]
}

/// Checks that `inputs` are the shards 1..N of one run of one kernel; returns them in shard
/// order with their records.
pub fn check(
    inputs: Vec<(String, RunResults)>,
) -> Result<Vec<(String, ShardRecord, RunResults)>, MergeError> {
    let mut shards = Vec::new();
    for (dir, r) in inputs {
        let rec = r.shard.clone().ok_or_else(|| {
            MergeError::Refused(format!(
                "{dir} is not a shard's report (no shard record: run it with --shard I/N){}",
                if r.merged_from.is_empty() {
                    ""
                } else {
                    "; it is a merged report"
                }
            ))
        })?;
        shards.push((dir, rec, r));
    }
    shards.sort_by_key(|(_, rec, _)| rec.index);
    let Some((first_dir, first, first_r)) = shards.first() else {
        return Err(MergeError::Input("no reports to merge".into()));
    };
    for (dir, rec, r) in &shards[1..] {
        let cut = |x: &ShardRecord| (x.count, x.scheme.clone(), x.selection_sha256.clone());
        if cut(rec) != cut(first) {
            return Err(MergeError::Refused(format!(
                "{dir} (shard {}/{}, selection of {} cases, {}) and {first_dir} (shard {}/{}, \
                 selection of {} cases, {}) are not shards of one run: same N, scheme and \
                 selection (filter and skips) needed",
                rec.index,
                rec.count,
                rec.selected,
                rec.scheme,
                first.index,
                first.count,
                first.selected,
                first.scheme
            )));
        }
        for ((what, a), (_, b)) in kernel_key(&r.environment)
            .into_iter()
            .zip(kernel_key(&first_r.environment))
        {
            // An empty release: the shard never booted (its infrastructure error says why).
            if a != b && !(what == "kernel release" && (a.is_empty() || b.is_empty())) {
                return Err(MergeError::Refused(format!(
                    "{dir} and {first_dir} ran different kernels: {what} {a:?} against {b:?}"
                )));
            }
        }
    }
    check_coverage(&shards)?;
    Ok(shards)
}

/// Every shard 1..N exactly once, and every case in one shard only, its own.
fn check_coverage(shards: &[(String, ShardRecord, RunResults)]) -> Result<(), MergeError> {
    let count = shards[0].1.count;
    let mut seen: BTreeMap<u32, &str> = BTreeMap::new();
    for (dir, rec, _) in shards {
        if let Some(other) = seen.insert(rec.index, dir) {
            return Err(MergeError::Refused(format!(
                "overlapping shards: {other} and {dir} are both shard {}/{count}",
                rec.index
            )));
        }
    }
    let missing: Vec<String> = (1..=count)
        .filter(|i| !seen.contains_key(i))
        .map(|i| format!("{i}/{count}"))
        .collect();
    if !missing.is_empty() {
        return Err(MergeError::Refused(format!(
            "missing shard(s) {}: got {} of {count}",
            missing.join(", "),
            shards.len()
        )));
    }
    let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
    for (dir, rec, r) in shards {
        for c in &r.cases {
            if let Some(other) = owner.insert(c.name.as_str(), dir) {
                return Err(MergeError::Refused(format!(
                    "overlapping shards: case {} is in {other} and in {dir}",
                    c.name
                )));
            }
            if !rec.shard().contains(&c.name) {
                return Err(MergeError::Refused(format!(
                    "{dir}: case {} does not belong to shard {}",
                    c.name,
                    rec.shard()
                )));
            }
        }
    }
    Ok(())
}

/// One run's results from its checked shards (in shard order): the cases sorted by name, VM
/// numbers made unique across shards, each shard's problems and infrastructure errors prefixed
/// with its shard.
pub fn combine(shards: &[(String, ShardRecord, RunResults)]) -> RunResults {
    let mut m = shards[0].2.clone();
    m.cases.clear();
    m.console_findings.clear();
    m.vms.clear();
    m.infrastructure_errors.clear();
    m.problems.clear();
    m.environment.boot_seconds.clear();
    m.environment.tainted_after = None;
    m.shard = None;
    let mut accels = BTreeSet::new();
    let mut features = BTreeSet::new();
    for (dir, rec, r) in shards {
        let base = m.vms.len();
        let tag = format!("shard {}", rec.shard());
        let e = &r.environment;
        m.environment.boot_seconds.extend(&e.boot_seconds);
        if let Some(t) = e.tainted_after {
            m.environment.tainted_after = Some(m.environment.tainted_after.unwrap_or(0) | t);
        }
        if m.environment.kernel_release.is_empty() {
            m.environment.kernel_release = e.kernel_release.clone();
        }
        if !e.accelerator.is_empty() {
            accels.insert(e.accelerator.clone());
        }
        if !e.feature.is_empty() {
            features.insert(e.feature.clone());
            if m.environment.feature.is_empty() {
                m.environment.feature = e.feature.clone();
                m.environment.feature_reason = e.feature_reason.clone();
                m.environment.feature_observed = e.feature_observed.clone();
            }
        }
        m.cases.extend(r.cases.iter().cloned().map(|mut c| {
            c.vm += base;
            c
        }));
        m.console_findings
            .extend(r.console_findings.iter().cloned().map(|mut f| {
                f.vm += base;
                f
            }));
        m.vms.extend(r.vms.iter().cloned().map(|mut v| {
            v.index += base;
            v
        }));
        let ran = r.cases.len();
        if ran != rec.cases && r.infrastructure_errors.is_empty() {
            m.problems.push(format!(
                "{tag}: {ran} case row(s) for the {} selected",
                rec.cases
            ));
        }
        m.infrastructure_errors.extend(
            r.infrastructure_errors
                .iter()
                .map(|x| format!("{tag}: {x}")),
        );
        m.problems
            .extend(r.problems.iter().map(|x| format!("{tag}: {x}")));
        m.merged_from.push(MergedFrom {
            dir: dir.clone(),
            shard: rec.clone(),
            verdict: r.verdict.clone(),
            exit_code: r.exit_code,
        });
    }
    if features.len() > 1 {
        m.problems.push(format!(
            "the shards' probes disagree about the feature: {}",
            features.into_iter().collect::<Vec<_>>().join(" / ")
        ));
    }
    m.environment.accelerator = accels.into_iter().collect::<Vec<_>>().join("+");
    m.cases.sort_by(|a, b| a.name.cmp(&b.name));
    m
}

/// What `runner merge` does: check, combine, judge, write. The merged results, or why not.
pub fn merge(
    dirs: &[PathBuf],
    out: &Path,
    snapshots: &Path,
    gate: Gate,
    accept: bool,
) -> Result<RunResults, MergeError> {
    let mut inputs = Vec::new();
    for d in dirs {
        let r = load(d).map_err(|e| MergeError::Input(format!("{e:#}")))?;
        inputs.push((d.display().to_string(), r));
    }
    let shards = check(inputs)?;
    let mut merged = combine(&shards);
    crate::run::judge(&mut merged, snapshots, gate, accept);
    merged
        .write_all(out)
        .map_err(|e| MergeError::Input(format!("writing {}: {e:#}", out.display())))?;
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample;
    use crate::shard::Shard;

    /// `sample()` cut into `n` shards as `run --shard` would have cut it.
    fn shards_of(full: &RunResults, n: u32) -> Vec<(String, RunResults)> {
        let names: Vec<String> = full.cases.iter().map(|c| c.name.clone()).collect();
        (1..=n)
            .map(|index| {
                let s = Shard { index, count: n };
                let mut r = full.clone();
                r.cases.retain(|c| s.contains(&c.name));
                r.shard = Some(ShardRecord::new(s, &names));
                (format!("s{index}"), r)
            })
            .collect()
    }

    fn refused(inputs: Vec<(String, RunResults)>) -> String {
        match check(inputs) {
            Err(MergeError::Refused(m)) => m,
            other => panic!("not refused: {:?}", other.map(|v| v.len())),
        }
    }

    #[test]
    fn merged_shards_give_the_unsharded_matrix() {
        let full = sample();
        for n in [1, 2, 3, 4] {
            let merged = combine(&check(shards_of(&full, n)).unwrap());
            assert_eq!(merged.matrix(), full.matrix(), "{n} shards");
            assert_eq!(merged.merged_from.len(), n as usize);
            assert!(merged.shard.is_none());
        }
    }

    #[test]
    fn missing_overlapping_and_foreign_shards_are_refused() {
        let full = sample();
        let mut three = shards_of(&full, 3);
        three.remove(1);
        assert!(refused(three).contains("missing shard(s) 2/3"));
        let mut twice = shards_of(&full, 3);
        twice.push(twice[0].clone());
        assert!(refused(twice).contains("both shard 1/3"));
        let mut mixed = shards_of(&full, 2);
        mixed.extend(shards_of(&full, 3).into_iter().skip(1));
        assert!(refused(mixed).contains("not shards of one run"));
        let mut stray = shards_of(&full, 2);
        let (from, to) = if stray[0].1.cases.is_empty() {
            (1, 0)
        } else {
            (0, 1)
        };
        let moved = stray[from].1.cases[0].clone();
        stray[to].1.cases.push(moved);
        assert!(refused(stray).contains("overlapping shards: case"));
        let mut unsharded = shards_of(&full, 2);
        unsharded[0].1.shard = None;
        assert!(refused(unsharded).contains("not a shard's report"));
    }

    #[test]
    fn shards_of_different_kernels_are_refused() {
        let full = sample();
        let mut k = shards_of(&full, 2);
        k[1].1.environment.kernel_release = "6.12.118".into();
        assert!(refused(k).contains("kernel release"));
        let mut p = shards_of(&full, 2);
        p[0].1.environment.profile = "wait-pid-6.12-fixed".into();
        assert!(refused(p).contains("profile"));
        let mut b = shards_of(&full, 2);
        b[1].1.environment.clone_wait_pid_flag = "0x4000000000".into();
        assert!(refused(b).contains("CLONE_WAIT_PID bit"));
    }

    #[test]
    fn problems_and_vms_keep_their_shard() {
        let full = sample();
        let mut s = shards_of(&full, 2);
        s[1].1
            .infrastructure_errors
            .push("VM 0 did not boot".into());
        s[0].1.vms = vec![crate::report::VmRecord {
            index: 0,
            outcome: "completed".into(),
            boot_seconds: Some(7.8),
            wall_seconds: 30.0,
            guest_exit_status: Some(0),
            cases_reported: 3,
        }];
        s[1].1.vms = s[0].1.vms.clone();
        let m = combine(&check(s).unwrap());
        assert_eq!(m.infrastructure_errors, ["shard 2/2: VM 0 did not boot"]);
        let idx: Vec<usize> = m.vms.iter().map(|v| v.index).collect();
        assert_eq!(idx, [0, 1]);
    }
}
