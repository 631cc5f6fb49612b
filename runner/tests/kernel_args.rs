//! The kernel options shared by run, probe, bench, fuzz and exec: the usage errors (exit 2) that
//! come before anything is built or booted.

use std::process::{Command, Output};

fn runner(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn missing_kernel_image_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let img = dir.path().join("no-bzImage");
    let o = runner(&[
        "run",
        "--kernel-image",
        img.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--no-build",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no-bzImage: no such file"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists(), "nothing was started");
}

#[test]
fn kernel_and_kernel_image_exclude_each_other_and_one_is_needed() {
    let both = runner(&[
        "probe",
        "--kernel",
        "host",
        "--kernel-image",
        "/x",
        "--out",
        "/tmp/x",
    ]);
    assert_eq!(both.status.code(), Some(2));
    assert!(
        stderr(&both).contains("cannot be used with"),
        "{}",
        stderr(&both)
    );
    let none = runner(&["probe", "--out", "/tmp/x"]);
    assert_eq!(none.status.code(), Some(2));
    assert!(stderr(&none).contains("--kernel"), "{}", stderr(&none));
    let mods = runner(&[
        "probe",
        "--kernel",
        "host",
        "--modules",
        "/x",
        "--out",
        "/tmp/x",
    ]);
    assert_eq!(
        mods.status.code(),
        Some(2),
        "--modules needs --kernel-image"
    );
}

#[test]
fn clone_wait_pid_flag_takes_the_case_binary_grammar() {
    for bad in ["0x3", "bit:64", "12", "forty"] {
        let o = runner(&[
            "probe",
            "--kernel",
            "host",
            "--clone-wait-pid-flag",
            bad,
            "--out",
            "/tmp/x",
        ]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("CLONE_WAIT_PID_FLAG"),
            "{bad}: {}",
            stderr(&o)
        );
    }
    // A good bit gets past the parser: the host profile's probe is refused later, for its own
    // reason (it boots no VM), still before anything runs.
    let o = runner(&[
        "probe",
        "--kernel",
        "host",
        "--clone-wait-pid-flag",
        "bit:40",
        "--out",
        "/tmp/x",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("probe boots a VM"), "{}", stderr(&o));
}
