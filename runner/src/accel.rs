//! Choosing QEMU's accelerator: KVM where it works, TCG otherwise, decided once per machine.
//!
//! `/dev/kvm` existing is not enough: under some nested hypervisors `-cpu host` aborts QEMU
//! ("failed to set MSR 0x10a") or the guest hangs right after decompression. So the first run
//! on a machine boots the profile's kernel with KVM under a short watchdog; if it does not
//! reach the guest script, TCG is used, and the decision is stored in
//! `<cache>/accel.json`, keyed by host kernel, CPU model and QEMU version.

use std::path::Path;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AccelChoice {
    /// Probe once per machine and remember.
    Auto,
    Kvm,
    Tcg,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub accel: Accel,
    pub reason: String,
    /// The machine key the decision was stored under.
    pub machine: String,
}

/// What identifies "this machine" for the stored decision.
pub fn machine_key() -> String {
    let release = rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let qemu = std::process::Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .unwrap_or_default();
    format!("{release} | {cpu} | {qemu}")
}

/// Whether the KVM device can be opened read-write. `WAITCONF_KVM_DEVICE` names another path
/// (e.g. a missing one, to exercise the no-KVM fallback on a machine that has KVM).
pub fn kvm_usable() -> Result<(), String> {
    let dev = std::env::var("WAITCONF_KVM_DEVICE").unwrap_or_else(|_| "/dev/kvm".into());
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&dev)
    {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("{dev} not usable: {e}")),
    }
}

/// Decides the accelerator. `probe` boots a guest with KVM and tells whether it reached the
/// guest script (Err carries why not); it is called only when nothing is stored for `machine`.
pub fn decide(
    choice: AccelChoice,
    store: &Path,
    machine: &str,
    kvm: Result<(), String>,
    reprobe: bool,
    probe: impl FnOnce() -> Result<(), String>,
) -> Decision {
    let mk = |accel, reason: String| Decision {
        accel,
        reason,
        machine: machine.to_owned(),
    };
    match choice {
        AccelChoice::Kvm => return mk(Accel::Kvm, "forced with --accel kvm".into()),
        AccelChoice::Tcg => return mk(Accel::Tcg, "forced with --accel tcg".into()),
        AccelChoice::Auto => {}
    }
    if let Err(why) = kvm {
        return mk(Accel::Tcg, why);
    }
    if !reprobe {
        if let Some(d) = std::fs::read_to_string(store)
            .ok()
            .and_then(|s| serde_json::from_str::<Decision>(&s).ok())
            .filter(|d| d.machine == machine)
        {
            return Decision {
                reason: format!("{} (remembered in {})", d.reason, store.display()),
                ..d
            };
        }
    }
    let d = match probe() {
        Ok(()) => mk(Accel::Kvm, "KVM probe boot reached the guest".into()),
        Err(why) => mk(Accel::Tcg, format!("KVM probe failed: {why}")),
    };
    if let Some(dir) = store.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::write(store, serde_json::to_string_pretty(&d).unwrap_or_default());
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn forced_and_missing_kvm() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("accel.json");
        let never = || -> Result<(), String> { panic!("must not probe") };
        assert_eq!(
            decide(AccelChoice::Tcg, &store, "m", Ok(()), false, never).accel,
            Accel::Tcg
        );
        assert_eq!(
            decide(AccelChoice::Kvm, &store, "m", Err("x".into()), false, never).accel,
            Accel::Kvm
        );
        let d = decide(
            AccelChoice::Auto,
            &store,
            "m",
            Err("/dev/kvm not usable: ENOENT".into()),
            false,
            never,
        );
        assert_eq!(d.accel, Accel::Tcg);
        assert!(d.reason.contains("/dev/kvm"));
        assert!(
            !store.exists(),
            "a missing /dev/kvm is not worth remembering"
        );
    }

    #[test]
    fn probes_once_per_machine_and_remembers() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("sub/accel.json");
        let probes = Cell::new(0);
        let failing = || {
            probes.set(probes.get() + 1);
            Err("no start marker within 30 s".to_owned())
        };
        let d = decide(AccelChoice::Auto, &store, "m1", Ok(()), false, failing);
        assert_eq!((d.accel, probes.get()), (Accel::Tcg, 1));
        let again = decide(AccelChoice::Auto, &store, "m1", Ok(()), false, || {
            panic!("remembered")
        });
        assert_eq!(again.accel, Accel::Tcg);
        assert!(again.reason.contains("remembered"));
        // Another machine key (new QEMU, new host kernel) probes again.
        let other = decide(AccelChoice::Auto, &store, "m2", Ok(()), false, || Ok(()));
        assert_eq!(other.accel, Accel::Kvm);
        // --reprobe-accel ignores the stored decision.
        let re = decide(AccelChoice::Auto, &store, "m2", Ok(()), true, || {
            Err("x".into())
        });
        assert_eq!(re.accel, Accel::Tcg);
    }
}
