//! The `CLONE_WAIT_PID_FLAG` grammar: which clone3 bit is CLONE_WAIT_PID on the kernel under
//! test. The one parser of it: the case binary reads the environment with it, the runner
//! checks profiles, `--clone-wait-pid-flag` and the case binary's env record with it.

use crate::env::CLONE_WAIT_PID_FLAG;
use crate::flags::CLONE_LEGACY_FLAGS;

/// Parses the bit: `0x`-hex (underscores allowed), decimal, or `bit:N`; exactly one bit, and
/// one of the clone3-only bits 32..=63 (the legacy 32-bit word is taken).
pub fn parse_bit(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let v = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(&h.replace('_', ""), 16).ok()
    } else if let Some(n) = s.strip_prefix("bit:") {
        n.parse::<u32>().ok().filter(|n| *n < 64).map(|n| 1u64 << n)
    } else {
        s.parse::<u64>().ok()
    }
    .ok_or_else(|| {
        format!("{CLONE_WAIT_PID_FLAG}={s:?}: not a number (want e.g. 0x200000000 or bit:33)")
    })?;
    if v.count_ones() != 1 {
        return Err(format!(
            "{CLONE_WAIT_PID_FLAG}={s}: must be exactly one bit, got {v:#x}"
        ));
    }
    if v <= CLONE_LEGACY_FLAGS {
        return Err(format!(
            "{CLONE_WAIT_PID_FLAG}={v:#x}: bits 0-31 are the legacy clone flags; \
             CLONE_WAIT_PID is a clone3-only bit (32-63)"
        ));
    }
    Ok(v)
}

/// The bit as the reports spell it (`0x10000000000`).
pub fn spell(bit: u64) -> String {
    format!("{bit:#x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits() {
        assert_eq!(parse_bit("0x200000000"), Ok(0x2_0000_0000));
        assert_eq!(parse_bit("bit:40"), Ok(1 << 40));
        assert_eq!(parse_bit("1099511627776"), Ok(1 << 40));
        assert!(parse_bit("0x3").is_err());
        assert!(parse_bit("0x1000").unwrap_err().contains("legacy"));
        assert!(parse_bit("0x300000000")
            .unwrap_err()
            .contains("exactly one bit"));
        assert!(parse_bit("CLONE_FOO").unwrap_err().contains("not a number"));
        assert!(parse_bit("bit:64").is_err());
    }

    #[test]
    fn hex_forms_and_whitespace() {
        assert_eq!(parse_bit(" 0X100_0000_0000\n"), Ok(1 << 40));
        assert_eq!(parse_bit("bit:63"), Ok(1 << 63));
        assert!(parse_bit("bit:31").unwrap_err().contains("legacy"));
        assert!(parse_bit("0x").unwrap_err().contains("not a number"));
        assert!(parse_bit("").unwrap_err().starts_with(CLONE_WAIT_PID_FLAG));
        assert!(parse_bit("0").unwrap_err().contains("exactly one bit"));
    }

    #[test]
    fn spelling_round_trips() {
        for n in 32..64 {
            assert_eq!(parse_bit(&spell(1 << n)), Ok(1 << n));
        }
        assert_eq!(spell(1 << 40), "0x10000000000");
    }
}
