//! `run --shard I/N` and `merge`, end to end on the host profile with a fake case binary (a
//! shell script that follows libtest-mimic's arguments and the report protocol): three shards
//! merged give the unsharded run's matrix and pass its snapshot; missing, overlapping and
//! foreign shards are refused with exit 4; bad `--shard` values are usage errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The fake binary's cases: three groups, every status, names whose shards differ.
fn names() -> Vec<String> {
    let mut v = Vec::new();
    for g in ["generic", "focused", "clone3"] {
        for i in 0..8 {
            let status = ["pass", "fail", "skip", "pass"][i % 4];
            v.push(format!("{g}::case{i}::{status}"));
        }
    }
    v
}

/// A case binary in sh: `--list` lists the selected names, a run reports them (the status is
/// the name's last component). Filter and `--skip` match substrings, or whole names with
/// `--exact`, as libtest-mimic does.
const FAKE: &str = r#"#!/bin/sh
filter=; exact=0; list=0; skips=
while [ $# -gt 0 ]; do
  case "$1" in
    --list) list=1;;
    --exact) exact=1;;
    --skip) shift; skips="$skips
$1";;
    --test-threads) shift;;
    --*) ;;
    *) filter=$1;;
  esac
  shift
done
matches() { # name pattern
  if [ $exact = 1 ]; then [ "$1" = "$2" ]; else case "$1" in *"$2"*) return 0;; esac; return 1; fi
}
selected() {
  if [ -n "$filter" ] && ! matches "$1" "$filter"; then return 1; fi
  old=$IFS; IFS='
'
  for s in $skips; do if matches "$1" "$s"; then IFS=$old; return 1; fi; done
  IFS=$old
  return 0
}
[ $list = 1 ] || echo "{\"kind\":\"env\",\"kernel_release\":\"fake-1.0\",\"clone_wait_pid_flag\":\"$CLONE_WAIT_PID_FLAG\",\"feature\":\"absent\",\"feature_reason\":\"fake\"}" >> "$WAITCONF_REPORT"
while read -r n; do
  selected "$n" || continue
  if [ $list = 1 ]; then echo "$n: test"; continue; fi
  echo "{\"kind\":\"case\",\"name\":\"$n\",\"status\":\"${n##*::}\",\"detail\":\"\",\"duration_ms\":1}" >> "$WAITCONF_REPORT"
done <<EOF
@NAMES@
EOF
exit 0
"#;

/// A workspace of its own (the host profile, runner/snapshots/) and the fake binary in it.
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    bin: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let profiles = root.join("vm-images/profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    std::fs::create_dir_all(root.join("runner/snapshots")).unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    std::fs::copy(
        repo.join("vm-images/profiles/host.toml"),
        profiles.join("host.toml"),
    )
    .unwrap();
    let bin = root.join("fake-cases");
    std::fs::write(&bin, FAKE.replace("@NAMES@", &names().join("\n"))).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    Fixture {
        _dir: dir,
        root,
        bin,
    }
}

impl Fixture {
    fn runner(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_runner"))
            .args(args)
            .current_dir(&self.root)
            .env("WAITCONF_CACHE", self.root.join("cache"))
            .env("CI", "1")
            .output()
            .unwrap()
    }

    fn run(&self, out: &str, extra: &[&str]) -> Output {
        let bin = self.bin.to_str().unwrap();
        let mut a = vec![
            "run",
            "--kernel",
            "host",
            "--cases-bin",
            bin,
            "--no-build",
            "--quiet",
            "--out",
            out,
        ];
        a.extend_from_slice(extra);
        self.runner(&a)
    }

    fn path(&self, p: &str) -> String {
        self.root.join(p).display().to_string()
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn results(dir: &str) -> serde_json::Value {
    let t = std::fs::read_to_string(Path::new(dir).join("results.json")).unwrap();
    serde_json::from_str(&t).unwrap()
}

/// (name, status) of every case row, sorted.
fn matrix(dir: &str) -> Vec<(String, String)> {
    let mut m: Vec<(String, String)> = results(dir)["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    m.sort();
    m
}

#[test]
fn three_shards_merged_are_the_unsharded_run() {
    let f = fixture();
    let full = f.path("full");
    let o = f.run(&full, &["--gate", "snapshot", "--accept"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(matrix(&full).len(), names().len());
    let mut shard_dirs = Vec::new();
    let mut sizes = Vec::new();
    for i in 1..=3 {
        let d = f.path(&format!("s{i}"));
        let o = f.run(&d, &["--shard", &format!("{i}/3"), "--gate", "snapshot"]);
        // Each shard matches its part of the snapshot the full run accepted.
        assert_eq!(o.status.code(), Some(0), "shard {i}: {}", stderr(&o));
        let r = results(&d);
        assert_eq!(r["shard"]["index"], i);
        assert_eq!(r["shard"]["count"], 3);
        assert_eq!(r["shard"]["selected"], names().len());
        sizes.push(matrix(&d).len());
        shard_dirs.push(d);
    }
    assert_eq!(sizes.iter().sum::<usize>(), names().len());
    assert!(sizes.iter().all(|&n| n > 0), "{sizes:?}");
    let merged = f.path("merged");
    let mut a = vec!["merge"];
    a.extend(shard_dirs.iter().rev().map(String::as_str));
    a.extend(["--out", &merged, "--gate", "snapshot"]);
    let o = f.runner(&a);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(matrix(&merged), matrix(&full));
    assert_eq!(results(&merged)["verdict"], "as-reviewed");
    assert_eq!(results(&merged)["merged_from"].as_array().unwrap().len(), 3);
    for file in ["results.tap", "results.ktap", "junit.xml"] {
        let merged_text = std::fs::read_to_string(Path::new(&merged).join(file)).unwrap();
        let failures =
            merged_text.matches("not ok").count() + merged_text.matches("<failure").count();
        let full_text = std::fs::read_to_string(Path::new(&full).join(file)).unwrap();
        let full_failures =
            full_text.matches("not ok").count() + full_text.matches("<failure").count();
        assert_eq!(failures, full_failures, "{file}");
    }
    // The strict gate judges the merged run as one: it has failures.
    let o = f.runner(&[
        "merge",
        &shard_dirs[0],
        &shard_dirs[1],
        &shard_dirs[2],
        "--out",
        &merged,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}

#[test]
fn merge_refuses_what_is_not_one_run() {
    let f = fixture();
    let d: Vec<String> = (1..=3).map(|i| f.path(&format!("s{i}"))).collect();
    for (i, dir) in d.iter().enumerate() {
        let o = f.run(dir, &["--shard", &format!("{}/3", i + 1)]);
        assert_eq!(
            o.status.code(),
            Some(1),
            "strict: the fake fails some: {}",
            stderr(&o)
        );
    }
    let out = f.path("m");
    let missing = f.runner(&["merge", &d[0], &d[2], "--out", &out]);
    assert_eq!(missing.status.code(), Some(4));
    assert!(
        stderr(&missing).contains("missing shard(s) 2/3"),
        "{}",
        stderr(&missing)
    );
    let twice = f.runner(&["merge", &d[0], &d[1], &d[2], &d[1], "--out", &out]);
    assert_eq!(twice.status.code(), Some(4));
    assert!(
        stderr(&twice).contains("overlapping shards"),
        "{}",
        stderr(&twice)
    );
    let filtered = f.path("filtered");
    let o = f.run(&filtered, &["--shard", "2/3", "--filter", "generic::"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let other = f.runner(&["merge", &d[0], &filtered, &d[2], "--out", &out]);
    assert_eq!(other.status.code(), Some(4));
    assert!(
        stderr(&other).contains("not shards of one run"),
        "{}",
        stderr(&other)
    );
    let file = Path::new(&d[1]).join("results.json");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("\"fake-1.0\"", "\"fake-2.0\"")).unwrap();
    let kernels = f.runner(&["merge", &d[0], &d[1], &d[2], "--out", &out]);
    assert_eq!(kernels.status.code(), Some(4));
    assert!(
        stderr(&kernels).contains("different kernels"),
        "{}",
        stderr(&kernels)
    );
    assert!(
        !Path::new(&out).join("results.json").exists(),
        "nothing written"
    );
}

#[test]
fn bad_shard_values_are_usage_errors() {
    let f = fixture();
    let out = f.path("x");
    for (bad, says) in [
        ("0/3", "numbered 1 to 3"),
        ("4/3", "numbered 1 to 3"),
        ("2/0", "at least 1"),
        ("junk", "expected I/N"),
    ] {
        let o = f.run(&out, &["--shard", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}");
        assert!(stderr(&o).contains(says), "{bad}: {}", stderr(&o));
    }
    let o = f.run(&out, &["--shard", "1/2", "--gate", "snapshot", "--accept"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("accept the merged one"),
        "{}",
        stderr(&o)
    );
    assert!(!Path::new(&out).exists(), "nothing was run");
}
