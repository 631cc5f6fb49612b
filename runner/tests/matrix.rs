//! `runner matrix --parallel`: several profiles at once give the same matrix as one at a time,
//! each profile's progress lines labelled with its name. Three host-kind profiles and a fake
//! case binary (no VM, no kernel).

use std::path::Path;
use std::process::{Command, Output};

const FAKE: &str = r#"#!/bin/sh
for a in "$@"; do [ "$a" = --list ] && { echo 'g::one::hidden: test'; echo 'g::two::plain: test'; exit 0; }; done
echo "{\"kind\":\"env\",\"kernel_release\":\"$(uname -r)\",\"clone_wait_pid_flag\":\"$CLONE_WAIT_PID_FLAG\",\"feature\":\"absent\",\"feature_reason\":\"EINVAL\"}" >> "$WAITCONF_REPORT"
echo '{"kind":"case","name":"g::one::hidden","status":"skip","detail":"feature absent","duration_ms":1}' >> "$WAITCONF_REPORT"
echo '{"kind":"case","name":"g::two::plain","status":"pass","detail":"","duration_ms":1}' >> "$WAITCONF_REPORT"
"#;

fn setup(dir: &Path) {
    std::fs::create_dir_all(dir.join("vm/profiles")).unwrap();
    for n in ["a", "b", "c"] {
        std::fs::write(
            dir.join(format!("vm/profiles/host-{n}.toml")),
            format!(
                "name = \"host-{n}\"\ndescription = \"fake host {n}\"\nkind = \"host\"\n\
                 clone_wait_pid_flag = \"0x10000000000\"\n\n[expect]\nfeature = \"absent\"\n"
            ),
        )
        .unwrap();
    }
    let bin = dir.join("fake-cases");
    std::fs::write(&bin, FAKE).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn matrix(dir: &Path, parallel: &str, out: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runner"))
        .args([
            "matrix",
            "--no-build",
            "--parallel",
            parallel,
            "--vm-images",
        ])
        .arg(dir.join("vm"))
        .arg("--cases-bin")
        .arg(dir.join("fake-cases"))
        .arg("--out")
        .arg(dir.join(out))
        .output()
        .unwrap()
}

#[test]
fn parallel_matrix_equals_serial_matrix() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let one = matrix(dir.path(), "1", "one");
    let three = matrix(dir.path(), "3", "three");
    let err = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(one.status.code(), Some(0), "{}", err(&one));
    assert_eq!(three.status.code(), Some(0), "{}", err(&three));
    let table = |d: &str| std::fs::read_to_string(dir.path().join(d).join("matrix.txt")).unwrap();
    assert_eq!(table("one"), table("three"));
    assert!(table("one").contains("host-a") && table("one").contains("host-c"));
    for n in ["host-a", "host-b", "host-c"] {
        assert!(dir
            .path()
            .join("three")
            .join(n)
            .join("results.json")
            .is_file());
        assert!(
            err(&three).contains(&format!("s {n}] profile {n}")),
            "{}",
            err(&three)
        );
        assert!(!err(&one).contains(&format!(" {n}] ")), "{}", err(&one));
    }
}

#[test]
fn parallel_zero_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let o = matrix(dir.path(), "0", "zero");
    assert_eq!(o.status.code(), Some(2));
    assert!(!dir.path().join("zero").exists());
}
