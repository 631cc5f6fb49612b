//! KCOV sites of a vmlinux and their source lines (binutils' objdump and addr2line).
//!
//! With `-fsanitize-coverage=trace-pc` the compiler puts a call to `__sanitizer_cov_trace_pc`
//! at every instrumented site, and KCOV records the call's return address
//! (Documentation/dev-tools/kcov.rst). So the instrumentable sites of a kernel are the
//! instructions right after those calls: `objdump -d` lists them, a KCOV PC is one of them,
//! and `addr2line -f -i` on the call instruction gives the site's line, with the chain of
//! functions it is inlined into (a site of a static helper inlined into `wait_consider_task`
//! is a line of both). A function's lines are the lines its sites have, which makes "missed"
//! well defined: a line with a site that no recorded PC is.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// One frame of a site's inline chain: the function and the line in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    pub func: String,
    pub file: String,
    pub line: u32,
}

/// Every site of a vmlinux: the recorded PC (the return address) and its frames, innermost
/// first.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Sites {
    pub sites: BTreeMap<u64, Vec<Frame>>,
}

/// The call sites of `__sanitizer_cov_trace_pc` in objdump's disassembly: (call address,
/// address of the next instruction, which is the PC KCOV records).
pub fn parse_call_sites(disassembly: impl BufRead) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut pending: Option<u64> = None;
    for line in disassembly.lines().map_while(|l| l.ok()) {
        let Some((addr, rest)) = line.trim_start().split_once(':') else {
            continue;
        };
        let Ok(addr) = u64::from_str_radix(addr, 16) else {
            continue;
        };
        if let Some(call) = pending.take() {
            out.push((call, addr));
        }
        let rest = rest.trim();
        if (rest.starts_with("call") || rest.starts_with("jmp"))
            && rest.ends_with("<__sanitizer_cov_trace_pc>")
        {
            pending = Some(addr);
        }
    }
    out
}

/// addr2line's `-a -f -i` output for a batch of addresses: per address, its frames.
pub fn parse_addr2line(text: &str) -> Vec<(u64, Vec<Frame>)> {
    let mut out: Vec<(u64, Vec<Frame>)> = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(l) = lines.next() {
        if let Some(hex) = l.strip_prefix("0x") {
            if let Ok(a) = u64::from_str_radix(hex, 16) {
                out.push((a, Vec::new()));
                continue;
            }
        }
        let Some(loc) = lines.next() else { break };
        let Some((_, frames)) = out.last_mut() else {
            continue;
        };
        let loc = loc.split(" (discriminator").next().unwrap_or(loc);
        let (file, line) = loc.rsplit_once(':').unwrap_or((loc, "0"));
        frames.push(Frame {
            func: l.to_owned(),
            file: file.to_owned(),
            line: line.trim().parse().unwrap_or(0),
        });
    }
    out
}

/// The sites of `vmlinux`, from `cache` when it was made for this vmlinux (same size and
/// modification time), else computed and stored there.
pub fn sites(vmlinux: &Path, cache: &Path) -> Result<Sites> {
    let meta = std::fs::metadata(vmlinux).with_context(|| vmlinux.display().to_string())?;
    let stamp = format!(
        "{} {:?}",
        meta.len(),
        meta.modified().ok().map(|t| t
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0))
    );
    let stamp_path = cache.with_extension("stamp");
    if std::fs::read_to_string(&stamp_path).ok().as_deref() == Some(stamp.as_str()) {
        if let Some(s) = std::fs::read(cache)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
        {
            return Ok(s);
        }
    }
    crate::progress!(
        "coverage: listing the KCOV sites of {} (objdump -d, addr2line)",
        vmlinux.display()
    );
    let calls = call_sites(vmlinux)?;
    let frames = symbolize(vmlinux, calls.iter().map(|c| c.0))?;
    let mut s = Sites::default();
    for ((call, pc), (a, f)) in calls.iter().zip(frames) {
        if *call != a {
            bail!("addr2line answered {a:#x} for {call:#x}");
        }
        s.sites.insert(*pc, f);
    }
    std::fs::write(cache, serde_json::to_vec(&s)?)?;
    std::fs::write(stamp_path, stamp)?;
    Ok(s)
}

fn call_sites(vmlinux: &Path) -> Result<Vec<(u64, u64)>> {
    let mut child = Command::new("objdump")
        .args(["-d", "--no-show-raw-insn"])
        .arg(vmlinux)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("objdump (binutils)")?;
    let calls = parse_call_sites(BufReader::new(child.stdout.take().expect("piped")));
    let st = child.wait()?;
    if !st.success() || calls.is_empty() {
        bail!(
            "objdump -d {} found no __sanitizer_cov_trace_pc calls ({st}): not a KCOV kernel?",
            vmlinux.display()
        );
    }
    Ok(calls)
}

/// `addr2line -a -f -i` over every address, one batch through a pipe.
pub fn symbolize(
    vmlinux: &Path,
    addrs: impl Iterator<Item = u64>,
) -> Result<Vec<(u64, Vec<Frame>)>> {
    let mut child = Command::new("addr2line")
        .args(["-a", "-f", "-i", "-e"])
        .arg(vmlinux)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("addr2line (binutils)")?;
    let mut stdin = child.stdin.take().expect("piped");
    let input: String = addrs.map(|a| format!("{a:#x}\n")).collect();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output()?;
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("addr2line writer panicked"))??;
    if !out.status.success() {
        bail!("addr2line failed: {}", out.status);
    }
    Ok(parse_addr2line(&String::from_utf8_lossy(&out.stdout)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_sites_are_the_next_instructions() {
        let dis = "\
ffffffff81001000 <f>:
ffffffff81001000:\tpush   %rbp
ffffffff81001001:\tcall   ffffffff81100000 <__sanitizer_cov_trace_pc>
ffffffff81001006:\tmov    %rdi,%rax
ffffffff81001009:\tcall   ffffffff81100010 <other>
ffffffff8100100e:\tcall   ffffffff81100000 <__sanitizer_cov_trace_pc>

ffffffff81001013 <g>:
ffffffff81001013:\tret
";
        assert_eq!(
            parse_call_sites(dis.as_bytes()),
            vec![
                (0xffffffff81001001, 0xffffffff81001006),
                (0xffffffff8100100e, 0xffffffff81001013)
            ]
        );
    }

    /// A user-space program built as the kernel is (`-fsanitize-coverage=trace-pc`, line
    /// tables), recording its return addresses as KCOV does: every recorded PC is a site, and
    /// the lines of a function (inlined or not) split into the reached and the missed.
    #[test]
    fn sites_of_a_trace_pc_build_match_what_it_records() {
        let src = r#"
#include <stdio.h>
static FILE *out;
__attribute__((no_sanitize_coverage)) void __sanitizer_cov_trace_pc(void) {
	if (out) fprintf(out, "%lx\n", (unsigned long)__builtin_return_address(0));
}
static inline __attribute__((always_inline)) int helper(int x) {
	if (x > 3)
		return x * 2; /* reached */
	return x + 1; /* missed */
}
__attribute__((noinline)) int target(int x) {
	if (x == 42)
		return 0; /* missed */
	return helper(x);
}
int main(int argc, char **argv) {
	out = fopen(argv[1], "w");
	int r = target(argc + 5);
	fclose(out);
	out = 0;
	return r == 0;
}
"#;
        let d = tempfile::tempdir().unwrap();
        let (c, bin, pcs) = (
            d.path().join("t.c"),
            d.path().join("t"),
            d.path().join("pcs"),
        );
        std::fs::write(&c, src).unwrap();
        let built = Command::new("gcc")
            .args(["-O2", "-g", "-no-pie", "-fsanitize-coverage=trace-pc", "-o"])
            .arg(&bin)
            .arg(&c)
            .status();
        if !built.is_ok_and(|s| s.success()) {
            eprintln!("skipped: no gcc with -fsanitize-coverage=trace-pc");
            return;
        }
        assert!(Command::new(&bin).arg(&pcs).status().unwrap().code() == Some(0));
        let recorded: Vec<u64> = std::fs::read_to_string(&pcs)
            .unwrap()
            .lines()
            .map(|l| u64::from_str_radix(l, 16).unwrap())
            .collect();
        let s = sites(&bin, &d.path().join("sites.json")).unwrap();
        assert!(!recorded.is_empty());
        for pc in &recorded {
            assert!(s.sites.contains_key(pc), "{pc:#x} is no site");
        }
        let text = std::fs::read_to_string(&c).unwrap();
        let line_of =
            |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() as u32 + 1;
        let lines = |func: &str, hit: bool| -> std::collections::BTreeSet<u32> {
            s.sites
                .iter()
                .filter(|(pc, _)| recorded.contains(pc) == hit)
                .flat_map(|(_, fr)| fr.iter().filter(|f| f.func == func).map(|f| f.line))
                .collect()
        };
        assert!(lines("helper", true).contains(&line_of("/* reached */")));
        assert!(lines("helper", false).contains(&line_of("/* missed */")));
        assert!(!lines("helper", true).contains(&line_of("/* missed */")));
        assert!(lines("target", true).contains(&line_of("if (x == 42)")));
        // The second call reads the cache.
        let again = sites(&bin, &d.path().join("sites.json")).unwrap();
        assert_eq!(again.sites.len(), s.sites.len());
    }

    #[test]
    fn addr2line_frames_innermost_first() {
        let out = "\
0xffffffff81001001
eligible_child
/src/kernel/exit.c:1085 (discriminator 2)
wait_consider_task
/src/kernel/exit.c:1390
0xffffffff8100100e
??
??:0
";
        let got = parse_addr2line(out);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, 0xffffffff81001001);
        assert_eq!(
            got[0].1,
            vec![
                Frame {
                    func: "eligible_child".into(),
                    file: "/src/kernel/exit.c".into(),
                    line: 1085
                },
                Frame {
                    func: "wait_consider_task".into(),
                    file: "/src/kernel/exit.c".into(),
                    line: 1390
                }
            ]
        );
        assert_eq!(got[1].1[0].func, "??");
        assert_eq!(got[1].1[0].line, 0);
    }
}
