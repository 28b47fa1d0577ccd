"""The balloon CI test's user-space instructions under callgrind: a deterministic measure for comparing two
trees (start-up, imports and the kernel's Python), where CPU time on a shared machine is noisy. Kernel time
(page population, preadv) is not in it; bench/run.py --only ci times the whole.

  python bench/instructions.py [TREE ...]     # default: this checkout; needs valgrind

Each TREE is a checkout with its compiled modules built (pip install -e, or setup.py build_ext --inplace)."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def instructions(tree: Path) -> int:
    script = tree / "bench" / "balloon_ci.py"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, script], env=env, stdout=subprocess.DEVNULL, check=True)   # warm bytecode
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(["valgrind", "--tool=callgrind", "--smc-check=all-non-file",
                              f"--callgrind-out-file={tmp}/cg.out", sys.executable, script],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True)
    found = re.search(r"Collected : (\d+)", out.stderr)
    if not found:
        raise SystemExit(f"instructions: callgrind printed no total for {tree}")
    return int(found.group(1))


def main() -> int:
    if shutil.which("valgrind") is None:
        print("instructions: valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    trees = [Path(t).resolve() for t in sys.argv[1:]] or [HERE]
    for tree in trees:
        if not (tree / "bench" / "balloon_ci.py").is_file():
            print(f"instructions: {tree} is not a Ballast checkout", file=sys.stderr)
            return 2
    for tree in trees:
        print(f"{instructions(tree) / 1e6:10.1f} M instructions  {tree}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
