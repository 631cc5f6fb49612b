//! The clone flag bits by name: the legacy 32-bit word and the clone3-only bits mainline knows,
//! the one table of their names ([`NAMES`], [`names`]) and of the clone3-only bits mainline gave
//! a meaning, with the release that did ([`MAINLINE_CLONE3_BITS`]).

macro_rules! clone_flags {
    ($($(#[$doc:meta])* $name:ident = $value:expr;)*) => {
        $($(#[$doc])* pub const $name: u64 = $value;)*
        /// Every named flag bit with its name, in the order [`names`] spells them.
        pub const NAMES: &[(u64, &str)] = &[$(($name, stringify!($name))),*];
    };
}

clone_flags! {
    CLONE_VM = 0x0000_0100;
    CLONE_FS = 0x0000_0200;
    CLONE_FILES = 0x0000_0400;
    CLONE_SIGHAND = 0x0000_0800;
    CLONE_PIDFD = 0x0000_1000;
    CLONE_PTRACE = 0x0000_2000;
    CLONE_VFORK = 0x0000_4000;
    CLONE_PARENT = 0x0000_8000;
    CLONE_THREAD = 0x0001_0000;
    CLONE_NEWNS = 0x0002_0000;
    CLONE_SYSVSEM = 0x0004_0000;
    CLONE_SETTLS = 0x0008_0000;
    CLONE_PARENT_SETTID = 0x0010_0000;
    CLONE_CHILD_CLEARTID = 0x0020_0000;
    CLONE_DETACHED = 0x0040_0000;
    CLONE_UNTRACED = 0x0080_0000;
    CLONE_CHILD_SETTID = 0x0100_0000;
    CLONE_NEWCGROUP = 0x0200_0000;
    CLONE_NEWUTS = 0x0400_0000;
    CLONE_NEWIPC = 0x0800_0000;
    CLONE_NEWUSER = 0x1000_0000;
    CLONE_NEWPID = 0x2000_0000;
    CLONE_NEWNET = 0x4000_0000;
    CLONE_IO = 0x8000_0000;
    /// One of the CSIGNAL bits, which clone3 accepts as this flag (5.6+).
    CLONE_NEWTIME = 0x0000_0080;
    CLONE_CLEAR_SIGHAND = 1 << 32;
    CLONE_INTO_CGROUP = 1 << 33;
    CLONE_AUTOREAP = 1 << 34;
    CLONE_NNP = 1 << 35;
    CLONE_PIDFD_AUTOKILL = 1 << 36;
    CLONE_EMPTY_MNTNS = 1 << 37;
}

/// The exit-signal byte of the legacy word.
pub const CSIGNAL: u64 = 0x0000_00ff;
/// Every bit of the legacy 32-bit word (kernel's `CLONE_LEGACY_FLAGS`).
pub const CLONE_LEGACY_FLAGS: u64 = 0xffff_ffff;

/// clone3-only bits mainline gave a meaning, and since when.
pub const MAINLINE_CLONE3_BITS: &[(u64, &str, (u32, u32))] = &[
    (CLONE_CLEAR_SIGHAND, "CLONE_CLEAR_SIGHAND", (5, 5)),
    (CLONE_INTO_CGROUP, "CLONE_INTO_CGROUP", (5, 7)),
    (CLONE_AUTOREAP, "CLONE_AUTOREAP", (7, 1)),
    (CLONE_NNP, "CLONE_NNP", (7, 1)),
    (CLONE_PIDFD_AUTOKILL, "CLONE_PIDFD_AUTOKILL", (7, 1)),
    // Present in 7.2 (clone3_args_valid in Debian's linux-source-7.2
    // accepts it); merged into the vfs tree on 2026-03-12 together with the
    // three bits above, i.e. for the 7.1 merge window (not checked against a
    // 7.1 tree).
    (CLONE_EMPTY_MNTNS, "CLONE_EMPTY_MNTNS", (7, 1)),
];

/// `CLONE_PIDFD|CLONE_VM|0x10000000000`-style spelling of a flag word: the named bits in
/// [`NAMES`] order, then what is left in hex; `0` for no bit.
pub fn names(f: u64) -> String {
    let mut rest = f;
    let mut parts = Vec::new();
    for (b, n) in NAMES {
        if rest & b != 0 {
            parts.push(n.to_string());
            rest &= !b;
        }
    }
    if rest != 0 {
        parts.push(format!("{rest:#x}"));
    }
    if parts.is_empty() {
        "0".into()
    } else {
        parts.join("|")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bit_has_one_name() {
        for (i, (b, n)) in NAMES.iter().enumerate() {
            assert_eq!(b.count_ones(), 1, "{n}");
            assert!(NAMES[i + 1..].iter().all(|(o, _)| o != b), "{n} twice");
        }
        // The legacy word is fully named except the exit-signal byte, whose top bit is
        // CLONE_NEWTIME for clone3.
        let legacy: u64 = NAMES
            .iter()
            .map(|(b, _)| b)
            .filter(|b| **b <= CLONE_LEGACY_FLAGS)
            .sum();
        assert_eq!(legacy, CLONE_LEGACY_FLAGS & !CSIGNAL | CLONE_NEWTIME);
    }

    #[test]
    fn mainline_bits_are_named() {
        for (b, n, _) in MAINLINE_CLONE3_BITS {
            assert!(*b > CLONE_LEGACY_FLAGS, "{n}");
            assert_eq!(names(*b), *n);
        }
    }

    #[test]
    fn spelling() {
        assert_eq!(names(0), "0");
        assert_eq!(
            names(CLONE_PIDFD | CLONE_VM | 1 << 40),
            "CLONE_VM|CLONE_PIDFD|0x10000000000"
        );
        assert_eq!(
            names(CLONE_AUTOREAP | CLONE_IO | CLONE_NEWTIME),
            "CLONE_IO|CLONE_NEWTIME|CLONE_AUTOREAP"
        );
        assert_eq!(names(0x1), "0x1");
    }
}
