"""Refresh the debugger transcript in docs/tutorial-why-evicted.md from a real run (the kernel's
behaviour moves the pages and passes it shows): python tools/tutorial_transcript.py"""
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "tutorial-why-evicted.md"
COMMAND = "$ ballast debug --commands examples/why-evicted.cmds scenario examples/why-evicted.toml\n"


def main() -> int:
    doc = DOC.read_text()
    start = doc.index(COMMAND) + len(COMMAND)
    end = doc.index("```", start)
    run = subprocess.run([sys.executable, "-m", "vmm.cli", "debug", "--commands", "examples/why-evicted.cmds",
                          "scenario", "examples/why-evicted.toml"], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "80"})
    if run.returncode != 0:
        sys.exit(f"tutorial_transcript: the debugger run failed: {run.stderr.strip().splitlines()[-1:]}")
    DOC.write_text(doc[:start] + run.stdout.rstrip("\n") + "\n" + doc[end:])
    print(f"{DOC.relative_to(REPO)}: transcript refreshed ({len(run.stdout.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
