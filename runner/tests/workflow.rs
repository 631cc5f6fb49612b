//! The GitHub workflow's kernel matrix, read as YAML: profiles x shards for the vm job, the
//! shard list 1..WAITCONF_SHARDS, one kernel cache key per profile shared by the kernel and vm
//! jobs, and a merge job after the shards that downloads their reports and gates the merge.

use std::path::Path;

use serde_yaml::Value;

fn workflow() -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let text = std::fs::read_to_string(root.join(".github/workflows/kernel-matrix.yml")).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .unwrap_or_else(|| panic!("not a list: {v:?}"))
        .iter()
        .map(|x| match x {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => panic!("{other:?}"),
        })
        .collect()
}

fn needs(job: &Value) -> Vec<String> {
    match &job["needs"] {
        Value::String(s) => vec![s.clone()],
        v => strings(v),
    }
}

/// The `with:` of the step of `job` that uses `action` (e.g. actions/cache@v4).
fn with_of<'a>(job: &'a Value, action: &str) -> &'a Value {
    job["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|s| s["uses"].as_str() == Some(action))
        .map(|s| &s["with"])
        .unwrap_or_else(|| panic!("no step uses {action}"))
}

fn runs(job: &Value) -> String {
    job["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|s| s["run"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn vm_job_is_profiles_by_shards() {
    let w = workflow();
    let jobs = &w["jobs"];
    let shards: u32 = match &w["env"]["WAITCONF_SHARDS"] {
        Value::Number(n) => n.as_u64().unwrap() as u32,
        v => panic!("WAITCONF_SHARDS: {v:?}"),
    };
    assert!(shards >= 2, "{shards}");
    let matrix = &jobs["vm"]["strategy"]["matrix"];
    let want: Vec<String> = (1..=shards).map(|i| i.to_string()).collect();
    assert_eq!(strings(&matrix["shard"]), want);
    let profiles = strings(&matrix["profile"]);
    assert!(profiles.len() >= 2, "{profiles:?}");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    for p in &profiles {
        assert!(
            root.join(format!("vm-images/profiles/{p}.toml")).is_file(),
            "{p}"
        );
        // The shards and the merge gate on the reviewed snapshot.
        assert!(
            root.join(format!("runner/snapshots/{p}.snap")).is_file(),
            "{p}"
        );
    }
    // The artifact pattern shard-<profile>-* and the cache path <profile>-* would also take
    // a profile named <profile>-<more>.
    for p in &profiles {
        for q in &profiles {
            assert!(
                !q.starts_with(&format!("{p}-")),
                "{q} would match {p}'s globs"
            );
        }
    }
    for job in ["kernel", "merge"] {
        assert_eq!(
            strings(&jobs[job]["strategy"]["matrix"]["profile"]),
            profiles,
            "{job}"
        );
    }
    let step = jobs["vm"]["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|s| s["run"].as_str().is_some_and(|r| r.contains("ci-steps.sh")))
        .expect("a step runs vm-images/ci-steps.sh");
    assert_eq!(
        step["env"]["WAITCONF_CI_SHARD"].as_str(),
        Some("${{ matrix.shard }}/${{ env.WAITCONF_SHARDS }}")
    );
}

#[test]
fn kernel_cache_is_keyed_per_profile() {
    let w = workflow();
    let jobs = &w["jobs"];
    let saved = with_of(&jobs["kernel"], "actions/cache@v4");
    let restored = with_of(&jobs["vm"], "actions/cache/restore@v4");
    assert_eq!(saved["key"], restored["key"]);
    assert_eq!(saved["path"], restored["path"]);
    let key = saved["key"].as_str().unwrap();
    assert!(key.starts_with("kernel-${{ matrix.profile }}-"), "{key}");
    assert!(key.contains("vm-images/profiles/{0}.toml"), "{key}");
    assert!(
        saved["path"]
            .as_str()
            .unwrap()
            .contains("kernels/${{ matrix.profile }}-"),
        "one profile's kernels"
    );
    assert!(needs(&jobs["vm"]).contains(&"kernel".to_owned()));
}

#[test]
fn merge_job_follows_the_shards_and_gates() {
    let w = workflow();
    let jobs = &w["jobs"];
    let merge = &jobs["merge"];
    assert!(
        needs(merge).contains(&"vm".to_owned()),
        "{:?}",
        needs(merge)
    );
    assert_eq!(merge["if"].as_str(), Some("${{ !cancelled() }}"));
    let up = with_of(&jobs["vm"], "actions/upload-artifact@v4");
    assert_eq!(
        up["name"].as_str(),
        Some("shard-${{ matrix.profile }}-${{ matrix.shard }}")
    );
    let down = with_of(merge, "actions/download-artifact@v4");
    assert_eq!(
        down["pattern"].as_str(),
        Some("shard-${{ matrix.profile }}-*")
    );
    let script = runs(merge);
    assert!(
        script.contains("runner merge out/shards/shard-"),
        "{script}"
    );
    assert!(script.contains("--gate snapshot"), "{script}");
    let merged_up = with_of(merge, "actions/upload-artifact@v4");
    assert!(merged_up["path"]
        .as_str()
        .unwrap()
        .starts_with("out/merged/"));
}
