#!/usr/bin/env python3
"""Shellcheck every `run:` block of GitHub workflow files, as actionlint does.

Each block is written to a temporary file with the job's shell (bash unless the step says
otherwise) and `${{ ... }}` expressions replaced by a placeholder word, then handed to
shellcheck. Also checks that every `needs:` names a job of the same workflow and that every
job has `runs-on`. Exit 1 on any finding, naming the workflow, job and step.
"""
import re
import subprocess
import sys
import tempfile

import yaml

EXPR = re.compile(r"\$\{\{.*?\}\}")


def check(path):
    bad = 0
    doc = yaml.safe_load(open(path, encoding="utf-8"))
    jobs = doc.get("jobs") or {}
    for name, job in jobs.items():
        if "runs-on" not in job and "uses" not in job:
            print(f"{path}: job {name}: no runs-on")
            bad += 1
        needs = job.get("needs", [])
        for n in [needs] if isinstance(needs, str) else needs:
            if n not in jobs:
                print(f"{path}: job {name}: needs unknown job {n}")
                bad += 1
        default_shell = ((job.get("defaults") or {}).get("run") or {}).get("shell", "bash")
        for i, step in enumerate(job.get("steps") or []):
            if "run" not in step:
                continue
            shell = step.get("shell", default_shell).split()[0]
            if shell not in ("bash", "sh"):
                continue
            body = EXPR.sub("PLACEHOLDER", step["run"])
            with tempfile.NamedTemporaryFile("w", suffix=".sh") as f:
                f.write(f"#!/usr/bin/env {shell}\n{body}\n")
                f.flush()
                r = subprocess.run(["shellcheck", "-s", shell, f.name], capture_output=True, text=True)
            if r.returncode:
                label = step.get("name", f"step {i + 1}")
                print(f"{path}: job {name}, {label}:\n{r.stdout.replace(f.name, 'run')}")
                bad += 1
    return bad


def main():
    bad = sum(check(p) for p in sys.argv[1:])
    if bad:
        sys.exit(1)
    print(f"workflow-lint: {len(sys.argv) - 1} workflows, every run: block shellcheck-clean")


if __name__ == "__main__":
    main()
