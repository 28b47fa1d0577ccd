"""The `ballast` command as a user sees it: output, exit status, and one-line errors."""
import json
import os
import re
import subprocess
import sys

import pytest

from ballast_testlib import FIRMWARE, REPO
from vmm import cli

HELLO = FIRMWARE / "hello"
HELLO_TEXT = "Hello from the Ballast guest!\n"


def run_cli(capfd, *argv):
    code = cli.main(list(argv))
    out, err = capfd.readouterr()
    return code, out, err


def assert_one_error_line(code, err):
    assert code != 0
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("ballast:"), err
    return lines[0]


# --- the happy path ---------------------------------------------------------------

def test_hello_prints_exactly_its_line_and_exits_0(capfd):
    code, out, err = run_cli(capfd, "run", str(HELLO))
    assert code == 0
    assert out == HELLO_TEXT
    assert err == ""


@pytest.mark.parametrize("arg, expected", [("7", 7), ("300", 300 & 0xFF)])
def test_exit_status_is_passed_through(capfd, arg, expected):
    code, out, err = run_cli(capfd, "run", str(HELLO), arg)
    assert code == expected
    assert out == HELLO_TEXT
    assert err == ""


def test_double_dash_separates_program_arguments(capfd):
    code, out, _ = run_cli(capfd, "run", "--mem", "64M", str(HELLO), "--", "5")
    assert code == 5
    assert out == HELLO_TEXT


def test_subprocess_hello_and_error_have_no_traceback(tmp_path):
    env = dict(os.environ)
    env.pop("BALLAST_DEBUG", None)
    ok = subprocess.run([sys.executable, "-m", "vmm.cli", "run", "--mem", "64M", str(HELLO), "3"],
                        cwd=REPO, capture_output=True, text=True, env=env, timeout=60)
    assert ok.returncode == 3
    assert ok.stdout == HELLO_TEXT
    assert ok.stderr == ""
    bad = subprocess.run([sys.executable, "-m", "vmm.cli", "run", str(tmp_path / "missing")],
                         cwd=REPO, capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode != 0
    assert "Traceback" not in bad.stderr
    assert len(bad.stderr.splitlines()) == 1 and bad.stderr.startswith("ballast:")


# --- bad input: one line on stderr, non-zero exit ----------------------------------

@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    data = HELLO.read_bytes()
    (d / "notes.txt").write_text("this is not a program\n")
    arm = bytearray(data)
    arm[18:20] = (183).to_bytes(2, "little")          # e_machine = EM_AARCH64
    (d / "arm64").write_bytes(bytes(arm))
    (d / "trunc100").write_bytes(data[:100])
    (d / "trunc3000").write_bytes(data[:3000])
    (d / "empty").write_bytes(b"")
    (d / "adir").mkdir()
    return d


@pytest.mark.parametrize("name, needle", [
    ("missing", "No such file"),
    ("notes.txt", "ELF"),
    ("arm64", "architecture"),
    ("trunc100", "truncated"),
    ("trunc3000", "truncated"),
    ("empty", ""),
    ("adir", "directory"),
])
def test_bad_program_files(capfd, bad_files, name, needle):
    code, out, err = run_cli(capfd, "run", str(bad_files / name))
    line = assert_one_error_line(code, err)
    assert name in line
    assert needle in line
    assert out == ""


def test_dynamically_linked_program_is_refused(capfd, compile_c):
    exe = compile_c("int main(){return 0;}\n", "dyn", flags=("-O0",))
    code, out, err = run_cli(capfd, "run", str(exe))
    line = assert_one_error_line(code, err)
    assert "dynamic" in line.lower() or "PT_INTERP" in line
    assert out == ""


def test_command_line_too_long(capfd):
    code, out, err = run_cli(capfd, "run", "--mem", "64M", str(HELLO), "x" * 5000)
    line = assert_one_error_line(code, err)
    assert "too long" in line
    assert out == ""


@pytest.mark.parametrize("mem, needle", [
    ("4M", "too small"),
    ("12Q", "12Q"),
    ("abc", "abc"),
    ("8G", "at most"),
    ("", "size"),
])
def test_bad_mem_sizes(capfd, mem, needle):
    code, out, err = run_cli(capfd, "run", "--mem", mem, str(HELLO))
    line = assert_one_error_line(code, err)
    assert "--mem" in line
    assert needle in line
    assert out == ""


@pytest.mark.parametrize("argv", [
    ["run", "--bogus", str(HELLO)],
    ["--bogus"],
    ["frobnicate"],
    ["run"],
])
def test_bad_command_lines(capfd, argv):
    code, out, err = run_cli(capfd, *argv)
    assert_one_error_line(code, err)
    assert out == ""


# --- guest crashes: a signal, 128 + signal, one line naming the instruction ----------

CRASHERS = {
    "jump_unmapped": ("int main(void){((void(*)(void))0x12345000)();return 0;}\n", 139, "SIGSEGV"),
    "trap": ("int main(void){__builtin_trap();return 0;}\n", 132, "SIGILL"),
    "bad_opcode": ('int main(void){__asm__ volatile(".byte 0x0f,0xff");return 0;}\n', 132, "SIGILL"),
    "bad_pointer": ("int main(void){volatile int *p=(int*)0x10;return *p;}\n", 139, "SIGSEGV"),
    "write_rodata": ('const char s[]="x";int main(void){*(volatile char*)s=1;return 0;}\n', 139, "SIGSEGV"),
}
# what the report must show of the faulting instruction
INSN_TEXT = {
    "jump_unmapped": "(unreadable)",      # nothing is mapped at the target, so nothing can be decoded
    "trap": "ud2",
    "bad_opcode": "ud0",                  # 0f ff
    "bad_pointer": "mov",
    "write_rodata": "mov",
}


@pytest.mark.parametrize("name", sorted(CRASHERS))
def test_crashing_programs(capfd, compile_c, name):
    source, expected_code, signame = CRASHERS[name]
    exe = compile_c(source, name, flags=("-static", "-O0"))
    code, out, err = run_cli(capfd, "run", "--mem", "64M", str(exe))
    assert code == expected_code
    line = assert_one_error_line(code, err)
    assert f"killed by {signame}" in line
    assert str(exe) in line
    assert INSN_TEXT[name] in line
    m = re.search(r"at ip (0x[0-9a-f]+)", line)
    assert m, line
    if name == "jump_unmapped":
        assert int(m.group(1), 16) == 0x12345000
        assert "fetch" in line


def test_crash_in_subprocess_has_no_traceback(compile_c):
    exe = compile_c(CRASHERS["trap"][0], "trap", flags=("-static", "-O0"))
    env = dict(os.environ)
    env.pop("BALLAST_DEBUG", None)
    proc = subprocess.run([sys.executable, "-m", "vmm.cli", "run", "--mem", "64M", str(exe)],
                          cwd=REPO, capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 132
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert proc.stderr.count("\n") == 1 and "killed by SIGILL" in proc.stderr and "ud2" in proc.stderr


# --- metrics -----------------------------------------------------------------------

def test_json_metrics_file(capfd, tmp_path):
    path = tmp_path / "metrics.json"
    code, out, err = run_cli(capfd, "run", "--mem", "64M", "--json", str(path), str(FIRMWARE / "memhog"),
                             "1M", "2")
    assert code == 0
    assert out == "memhog: 1048576 bytes, 2 passes, 256 pages verified\n"
    assert err == ""
    data = json.loads(path.read_text())
    assert isinstance(data["instructions"], int) and data["instructions"] > 0
    assert isinstance(data["virtual_ns"], int) and data["virtual_ns"] > 0
    assert isinstance(data["wall_s"], (int, float)) and data["wall_s"] >= 0
    assert data["page_faults"] >= 256
    assert data["guest"]["meminfo_kb"]["MemTotal"] > 0
    assert data["guest"]["meminfo_kb"]["MemTotal"] <= 64 << 10
    assert data["exit"]["code"] == 0


def test_json_to_stdout_follows_program_output(capfd):
    code, out, err = run_cli(capfd, "run", "--mem", "64M", "--json", "-", str(HELLO), "4")
    assert code == 4
    assert out.startswith(HELLO_TEXT)
    data = json.loads(out[len(HELLO_TEXT):])
    assert data["exit"] == {"code": 4, "signaled": False}


def test_json_records_the_fatal_signal(capfd, compile_c, tmp_path):
    exe = compile_c(CRASHERS["trap"][0], "trap", flags=("-static", "-O0"))
    path = tmp_path / "m.json"
    code, _, err = run_cli(capfd, "run", "--mem", "64M", "--json", str(path), str(exe))
    assert code == 132
    data = json.loads(path.read_text())
    assert data["exit"]["signaled"] is True and data["exit"]["signal"] == 4
    assert data["fatal"]["signal"] == "SIGILL" and data["fatal"]["instruction"] == "ud2"
