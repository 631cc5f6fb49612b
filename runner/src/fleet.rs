//! `runner fuzz --vms M`: M campaigns of one profile and target at once, each in its own VM
//! (`<out>/vm<i>/`, a whole `runner fuzz` report each) with its own working corpus copied
//! from the cached one, and, when all are done, their corpora merged into the cache with
//! libFuzzer's `-merge=1` on the same kernel ([`crate::corpus::merge_into`]). `<out>/fuzz.json`
//! holds the fleet: each VM's exec/s and the total, the corpus before and after the merge.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::corpus::{self, Merged, Stats};
use crate::fuzz::{self, FuzzOpts, FuzzReport};
use crate::gate::{EXIT_FAILURES, EXIT_INFRA, EXIT_OK};
use crate::paths::Paths;
use crate::profile::Profile;
use crate::progress;
use crate::run::{self, RunError};

#[derive(Debug, Clone, Serialize)]
pub struct VmCampaign {
    pub dir: String,
    /// execs / elapsed (libFuzzer's own exec/s is a whole number, 0 below one a second).
    pub exec_per_sec: f64,
    /// libFuzzer's wall seconds in the VM (campaign.sh's `elapsed`).
    pub elapsed_s: f64,
    pub execs: f64,
    /// Units in the VM's working corpus at its end.
    pub corpus_units: usize,
    pub verdict: String,
    pub exit_code: i32,
}

#[derive(Debug, Clone, Serialize)]
pub struct FleetReport {
    pub profile: String,
    pub target: String,
    pub secs: u64,
    pub vms: u32,
    /// libFuzzer processes per VM (fork mode above 1).
    pub workers: u32,
    pub campaigns: Vec<VmCampaign>,
    /// The sum of the VMs' exec/s.
    pub total_exec_per_sec: f64,
    pub total_execs: f64,
    pub corpus_cache: String,
    pub corpus_before: Stats,
    pub corpus_after: Stats,
    /// What `-merge=1` of the VMs' corpora added to the cache.
    pub merge: Option<Merged>,
    pub infrastructure_errors: Vec<String>,
    pub verdict: String,
    pub exit_code: i32,
}

fn num(rep: &FuzzReport, k: &str) -> f64 {
    rep.campaign.get(k).and_then(|v| v.as_f64()).unwrap_or(0.0)
}

/// A campaign's exec/s: its execs over libFuzzer's elapsed seconds, to two decimals; the
/// campaign line's whole number where there is no elapsed time.
fn rate(rep: &FuzzReport) -> f64 {
    let (execs, elapsed) = (num(rep, "execs"), num(rep, "elapsed"));
    if elapsed > 0.0 {
        (execs / elapsed * 100.0).round() / 100.0
    } else {
        num(rep, "exec_per_sec")
    }
}

/// Runs the fleet and writes `<out>/fuzz.json`. Only configuration errors return Err.
pub fn run_fleet(
    profile: &Profile,
    paths: &Paths,
    out: &Path,
    opts: &FuzzOpts,
    vms: u32,
) -> Result<FleetReport, RunError> {
    if vms == 0 {
        return Err(RunError::Usage("--vms must be at least 1".into()));
    }
    std::fs::create_dir_all(out)
        .map_err(|e| RunError::Usage(format!("cannot create {}: {e}", out.display())))?;
    let out = std::fs::canonicalize(out).map_err(|e| RunError::Usage(e.to_string()))?;
    let mut fleet = FleetReport {
        profile: profile.name.clone(),
        target: opts.target.as_str().into(),
        secs: opts.secs,
        vms,
        workers: opts.workers.max(1),
        campaigns: vec![],
        total_exec_per_sec: 0.0,
        total_execs: 0.0,
        corpus_cache: String::new(),
        corpus_before: Stats::default(),
        corpus_after: Stats::default(),
        merge: None,
        infrastructure_errors: vec![],
        verdict: String::new(),
        exit_code: 0,
    };
    if let Err(e) = campaigns(profile, paths, &out, opts, &mut fleet) {
        fleet.infrastructure_errors.push(format!("{e:#}"));
    }
    decide(&mut fleet);
    let json = serde_json::to_string_pretty(&fleet).unwrap_or_default() + "\n";
    if let Err(e) = std::fs::write(out.join("fuzz.json"), json) {
        progress!("cannot write fuzz.json: {e}");
        fleet.exit_code = EXIT_INFRA;
    }
    Ok(fleet)
}

/// Builds once, takes the cache's corpus (locked until the merge is done), runs the VMs at
/// once and merges their corpora.
fn campaigns(
    profile: &Profile,
    paths: &Paths,
    out: &Path,
    opts: &FuzzOpts,
    fleet: &mut FleetReport,
) -> anyhow::Result<()> {
    if opts.build {
        if let Some(note) = fuzz::build_fuzz(paths)? {
            progress!("{note}");
        }
    }
    // The kernel once, before the VMs race for it.
    run::prepare(profile, paths, &fuzz::prepare_opts(opts))?;
    let (cache, _lock) = corpus::locked_cache(paths, &profile.name, opts.target.as_str())?;
    fleet.corpus_cache = cache.display().to_string();
    fleet.corpus_before = corpus::count(&cache);
    let start = out.join("corpus-start");
    crate::session::GuestSession::prepare_dir(&start)?;
    fuzz::copy_new_files(&cache, &start)?;
    let each = FuzzOpts {
        build: false,
        corpus_from: Some(start),
        ..opts.clone()
    };
    progress!(
        "{} VM(s) of {} at once, {} libFuzzer worker(s) each, {} s",
        fleet.vms,
        profile.name,
        fleet.workers,
        opts.secs
    );
    let dirs: Vec<PathBuf> = (0..fleet.vms).map(|i| out.join(format!("vm{i}"))).collect();
    let reports: Vec<Result<FuzzReport, RunError>> = std::thread::scope(|s| {
        let handles: Vec<_> = dirs
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let each = &each;
                s.spawn(move || {
                    // The VMs' progress lines interleave: each thread's are labelled.
                    crate::progress::set_label(&format!("vm{i}"));
                    fuzz::run_fuzz(profile, paths, d, each, None)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a campaign thread panicked"))
            .collect()
    });
    let mut corpora = Vec::new();
    for (d, r) in dirs.iter().zip(reports) {
        let rep = r.map_err(|RunError::Usage(m)| anyhow::anyhow!(m))?;
        let working = d.join("guest/corpus");
        fleet.campaigns.push(VmCampaign {
            dir: d.display().to_string(),
            exec_per_sec: rate(&rep),
            elapsed_s: num(&rep, "elapsed"),
            execs: num(&rep, "execs"),
            corpus_units: corpus::count(&working).units,
            verdict: rep.verdict.clone(),
            exit_code: rep.exit_code,
        });
        corpora.push(working);
    }
    fleet.total_exec_per_sec = fleet.campaigns.iter().map(|c| c.exec_per_sec).sum();
    fleet.total_execs = fleet.campaigns.iter().map(|c| c.execs).sum();
    fleet.merge = Some(corpus::merge_into(
        profile,
        paths,
        opts,
        &cache,
        &corpora,
        &out.join("merge"),
    )?);
    fleet.corpus_after = corpus::count(&cache);
    Ok(())
}

/// 3 infrastructure (the fleet's or a VM's), 1 any VM's findings, 0 clean.
fn decide(f: &mut FleetReport) {
    let worst = f
        .campaigns
        .iter()
        .map(|c| c.exit_code)
        .max()
        .unwrap_or(EXIT_OK);
    let (verdict, code) = if !f.infrastructure_errors.is_empty() || worst == EXIT_INFRA {
        ("infrastructure-failure", EXIT_INFRA)
    } else if worst != EXIT_OK {
        ("findings", EXIT_FAILURES)
    } else {
        ("clean", EXIT_OK)
    };
    f.verdict = verdict.into();
    f.exit_code = code;
}

impl FleetReport {
    pub fn summary(&self) -> String {
        let mut s = format!(
            "fuzz {} on {}: {} VM(s) x {} worker(s), {} s\n",
            self.target, self.profile, self.vms, self.workers, self.secs
        );
        for c in &self.campaigns {
            s += &format!(
                "  {}: {} exec/s ({} execs in {} s), {} unit(s) at the end, {} (exit {})\n",
                c.dir, c.exec_per_sec, c.execs, c.elapsed_s, c.corpus_units, c.verdict, c.exit_code
            );
        }
        s += &format!(
            "  total: {} exec/s, {} execs\n  corpus {}: {} unit(s) / {} B before, {} / {} B after the merge",
            self.total_exec_per_sec,
            self.total_execs,
            self.corpus_cache,
            self.corpus_before.units,
            self.corpus_before.bytes,
            self.corpus_after.units,
            self.corpus_after.bytes
        );
        if let Some(m) = &self.merge {
            s += &format!(
                " (+{} unit(s), {} new features, {} new edges)",
                m.new_units, m.new_features, m.new_edges
            );
        }
        s += "\n";
        for e in &self.infrastructure_errors {
            s += &format!("  ! {e}\n");
        }
        s += &format!("verdict: {} (exit {})\n", self.verdict, self.exit_code);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accel::AccelChoice;
    use crate::fuzz::Target;
    use crate::profile::host_profile;

    fn exe(p: &Path, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// A fuzz binary in sh with libFuzzer's corpus contract: a campaign adds one unit named
    /// after its working corpus, `-merge=1 A B..` copies into A what A lacks and says so as
    /// libFuzzer does.
    const FAKE_FUZZ: &str = r#"#!/bin/sh
case "$1" in
  -merge=1)
    into=$2; shift 2; n=0
    for d in "$@"; do for f in "$d"/*; do
      [ -f "$f" ] || continue; b=$(basename "$f")
      [ -e "$into/$b" ] || { cp "$f" "$into/$b"; n=$((n + 1)); }
    done; done
    echo "MERGE-OUTER: $n new files with $((n * 2)) new features added; $n new coverage edges"
    exit 0;;
esac
echo "unit of $1" > "$1/new-$(echo "$1" | cksum | cut -d' ' -f1)"
exit 0
"#;

    #[test]
    fn two_vms_add_their_units_to_the_cache_through_one_merge() {
        let d = tempfile::tempdir().unwrap();
        let ws = d.path().join("ws");
        std::fs::create_dir_all(ws.join("fuzz/corpus/wait_sequence")).unwrap();
        std::fs::write(ws.join("fuzz/corpus/wait_sequence/seed1"), "s").unwrap();
        exe(
            &ws.join("fuzz/target/x86_64-unknown-linux-gnu/release/wait_sequence"),
            FAKE_FUZZ,
        );
        exe(
            &ws.join("fuzz/campaign.sh"),
            "#!/bin/bash\nmkdir -p \"$3\" \"$4\"\n\"$FUZZ_BIN_DIR/$1\" \"$3\" \"$4\"\n\
             echo \"CAMPAIGN target=$1 secs=$2 workers=$FUZZ_FORK elapsed=2 rc=0 execs=77 exec_per_sec=25 cov=1 ft=2 corpus=1 artifacts=0 leftovers=0\"\n",
        );
        let paths = Paths {
            workspace: ws,
            vm_images: Path::new(env!("CARGO_MANIFEST_DIR")).join("../vm-images"),
            snapshots: d.path().join("snap"),
            cache: d.path().join("cache"),
        };
        let opts = FuzzOpts {
            accel: AccelChoice::Tcg,
            workers: 2,
            ..FuzzOpts::new(Target::WaitSequence, 1)
        };
        let out = d.path().join("out");
        let f = run_fleet(&host_profile(), &paths, &out, &opts, 2).unwrap();
        assert_eq!((f.verdict.as_str(), f.exit_code), ("clean", 0), "{f:#?}");
        assert_eq!(f.campaigns.len(), 2);
        assert_eq!(f.total_exec_per_sec, 77.0, "77 execs in 2 s, twice");
        assert_eq!(f.total_execs, 154.0);
        assert_eq!(f.corpus_before.units, 1, "the seed");
        assert_eq!(f.corpus_after.units, 3, "the seed and one unit of each VM");
        assert_eq!(f.merge.as_ref().unwrap().new_units, 2);
        for c in &f.campaigns {
            assert_eq!(c.corpus_units, 2, "the copied seed and its own unit");
        }
        let log = std::fs::read_to_string(out.join("vm1/guest-output.log")).unwrap();
        assert!(log.contains("workers=2"), "{log}");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("fuzz.json")).unwrap()).unwrap();
        assert_eq!(json["total_exec_per_sec"], 77.0);
        assert_eq!(json["corpus_after"]["units"], 3);
        let merge_script = std::fs::read_to_string(out.join("merge/corpus.sh")).unwrap();
        assert!(
            merge_script.contains("WAIT_FUZZ_RISKY=0"),
            "the host merges without risky inputs"
        );
        let stats = corpus::measure(
            &host_profile(),
            &paths,
            &opts,
            &paths.cache.join("fuzz-corpus/host/wait_sequence"),
            &d.path().join("stats"),
        )
        .unwrap();
        // All three units are new to an empty directory: 3 edges, 6 features by the fake.
        assert_eq!((stats.units, stats.cov, stats.ft), (3, Some(3), Some(6)));
    }

    #[test]
    fn zero_vms_is_usage() {
        let d = tempfile::tempdir().unwrap();
        let paths = Paths::discover(None);
        let opts = FuzzOpts {
            accel: AccelChoice::Tcg,
            workers: 1,
            ..FuzzOpts::new(Target::WaitSequence, 1)
        };
        assert!(matches!(
            run_fleet(&host_profile(), &paths, d.path(), &opts, 0),
            Err(RunError::Usage(_))
        ));
    }
}
