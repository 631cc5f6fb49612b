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
