//! `runner bench`: boot-to-verdict against a bare `vng -- true` boot of the same kernel with the
//! same vng options, alternated `rounds` times; medians, their ratio (goal <= 1.5, the figure
//! asked for under TCG) and what each case costs beyond the boot.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Result};

use crate::gate::{EXIT_FAILURES, EXIT_OK};
use crate::paths::Paths;
use crate::profile::Profile;
use crate::progress;
use crate::run::{self, CasePlan, RunOpts};
use crate::session::{self, GuestSession};
use crate::vm::Echo;

/// Runs the rounds and writes `<out>/bench.json`; the exit code (0 within the goal, 1 not).
pub fn bench(p: &Profile, paths: &Paths, out: &Path, opts: &RunOpts, rounds: usize) -> Result<i32> {
    let prepared = run::prepare(p, paths, opts)?;
    std::fs::create_dir_all(out)?;
    let bin = run::stage_cases_binary(&run::cases_binary(paths, opts)?, out)?;
    let listed = run::list_cases(&bin, p, opts, false)?;
    let universe = run::list_cases(&bin, p, opts, true)?;
    let out = std::fs::canonicalize(out).unwrap_or_else(|_| out.to_owned());
    let launcher = prepared.launcher();
    let total = opts.vm_timeout.unwrap_or(p.vm.timeout_s);
    let plan = CasePlan {
        bin: &bin,
        profile: p,
        listed: &listed,
        universe: &universe,
        opts,
        wd: &session::watchdogs(180, total),
    };
    let (mut bare, mut full) = (Vec::new(), Vec::new());
    let mut cases_per_round = 0;
    for round in 0..rounds {
        let dir = out.join(format!("round{round}"));
        GuestSession::prepare_dir(&dir)?;
        // Bare: nothing but `true`; no markers, so the boot watchdog equals the total one.
        let s = GuestSession::new(launcher, &dir, vec![], Echo::Off);
        let s = GuestSession {
            console_log: dir.join("bare-console.log"),
            ..s.output_to(dir.join("bare-out.log"))
        };
        let t = Instant::now();
        let r = s.run_bare("true", &session::watchdogs(total, total));
        let bare_s = t.elapsed().as_secs_f64();
        if !matches!(&r, Ok(run) if run.vng_status == Some(0)) {
            bail!("bare boot failed in round {round}: {r:?}");
        }
        let t = Instant::now();
        let l = run::run_cases(launcher, &dir, &plan)?;
        let n = l.cases.len();
        // The same results a run writes, from the same assembly; the verdict is the bench's.
        let mut results = run::empty_results(p);
        run::note_prepared(&mut results, &prepared);
        run::absorb(&mut results, l, p);
        results.verdict = "bench".into();
        let _ = results.write_all(&dir);
        let full_s = t.elapsed().as_secs_f64();
        progress!("round {round}: bare vng -- true {bare_s:.2} s; boot-to-verdict {full_s:.2} s ({n} cases)");
        bare.push(bare_s);
        full.push(full_s);
        cases_per_round = n;
    }
    Ok(summarise(
        p,
        launcher.accel_name(),
        rounds,
        (bare, full),
        cases_per_round,
        &out,
    ))
}

/// Boot-to-verdict over a bare boot, at most.
pub const GOAL_RATIO: f64 = 1.5;

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Writes bench.json, prints the line, and says whether the ratio is within the goal.
fn summarise(
    p: &Profile,
    accel: &str,
    rounds: usize,
    (bare, full): (Vec<f64>, Vec<f64>),
    cases: usize,
    out: &Path,
) -> i32 {
    let (mb, mf) = (median(&bare), median(&full));
    // What each case costs beyond the boot: the spawn (a fork from the case binary's fork
    // server, or an exec with `--case-env WAITCONF_SPAWN=exec`), the case itself and its
    // supervision.
    let per_case_ms = 1000.0 * (mf - mb) / cases.max(1) as f64;
    let summary = serde_json::json!({
        "profile": p.name,
        "accelerator": accel,
        "rounds": rounds,
        "bare_vng_true_seconds": bare,
        "boot_to_verdict_seconds": full,
        "median_bare": mb,
        "median_boot_to_verdict": mf,
        "ratio": mf / mb,
        "goal_ratio": GOAL_RATIO,
        "cases": cases,
        "per_case_ms": per_case_ms,
    });
    let _ = std::fs::write(
        out.join("bench.json"),
        serde_json::to_string_pretty(&summary).unwrap_or_default(),
    );
    println!(
        "bench {} ({accel}): bare `vng -- true` median {mb:.2} s, boot-to-verdict median {mf:.2} s, ratio {:.2} (goal <= {GOAL_RATIO}); \
         {cases} cases, {per_case_ms:.1} ms per case beyond the boot",
        p.name,
        mf / mb
    );
    if mf / mb <= GOAL_RATIO {
        EXIT_OK
    } else {
        EXIT_FAILURES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_an_odd_and_an_even_count() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 3.0);
    }
}
