//! The runner's usage errors, from outside: exit 2 before anything is booted.

use std::process::Command;

#[test]
fn unknown_profile_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["run", "--kernel", "no-such-kernel", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown profile"));
}

#[test]
fn bad_bit_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("vm-images/profiles");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::write(
        images.join("bad.toml"),
        "name = \"bad\"\ndescription = \"d\"\nkind = \"host\"\nclone_wait_pid_flag = \"0x3\"\n[expect]\nfeature = \"absent\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["run", "--kernel", "bad", "--vm-images"])
        .arg(dir.path().join("vm-images"))
        .arg("--out")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("exactly one bit"));
}

#[test]
fn out_dir_with_a_colon_is_a_usage_error() {
    // virtme-ng's --rwdir refuses such a path; the runner says so before building or booting.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["run", "--kernel", "wait-pid-6.12", "--out"])
        .arg(dir.path().join("a:b"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cannot share a directory whose path has ':'"),
        "{err}"
    );
    assert!(!dir.path().join("a:b").exists());
}
