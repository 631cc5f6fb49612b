//! The in-guest feature probe, run as its own process on the host kernel (which lacks the
//! feature): bit 40 is unknown to clone3, so the verdict is "absent" and the control child is
//! reaped by a generic wait. On a patched kernel the same command says "works".

use std::process::Command;

#[test]
fn guest_probe_on_host_kernel() {
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(["guest-probe", "--flag", "0x10000000000"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value =
        serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    let verdict = v["verdict"].as_str().unwrap();
    assert!(verdict == "absent" || verdict == "works", "{text}");
    let steps = v["steps"].as_array().unwrap();
    assert!(
        steps
            .iter()
            .any(|s| s[0].as_str().unwrap().starts_with("control")),
        "{text}"
    );
    assert_eq!(
        out.status.code(),
        Some(if verdict == "works" { 0 } else { 4 })
    );
}

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
