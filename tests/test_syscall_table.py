"""The typed system call table: every x86-64 number named, each argument converted as its C type,
unknown calls ENOSYS and named once in the log."""
import inspect

import pytest

from ballast_testlib import boot
from guestos.kernel.syscall_64 import (SYSCALL_ARGS, SYSCALL_ENTRIES, SYSCALL_NAMES, SYSCALL_TABLE, _make_entry,
                                       arg_conversion, convert_arg, is_user_pointer, syscall_entry)
from guestos.kernel.syscall_tbl import SYSCALLS

GARBAGE = 0xDEADBEEF00000000


def test_every_x86_64_number_is_named_with_typed_arguments():
    assert set(SYSCALLS) == set(range(0, 335)) | set(range(424, 451))
    assert SYSCALL_NAMES[61] == "wait4" and SYSCALL_NAMES[7] == "poll" and SYSCALL_NAMES[450] == \
        "set_mempolicy_home_node" and SYSCALL_NAMES[334] == "rseq" and SYSCALL_NAMES[435] == "clone3"
    assert len(set(SYSCALL_NAMES.values())) == len(SYSCALL_NAMES)
    for nr, (name, args) in SYSCALLS.items():
        assert len(args) <= 6, name
        for ctype, argname in args:
            arg_conversion(ctype)                          # every type has a conversion
            assert argname.isidentifier()
    assert set(SYSCALL_TABLE) <= set(SYSCALLS)
    assert SYSCALLS[61][1] == (("pid_t", "upid"), ("int __user *", "stat_addr"), ("int", "options"),
                               ("struct rusage __user *", "ru"))
    assert SYSCALLS[56][1][3] == ("int __user *", "child_tidptr")       # x86-64's clone order
    assert is_user_pointer("const char __user *") and not is_user_pointer("unsigned long")


@pytest.mark.parametrize("ctype, value, expected", [
    ("pid_t", GARBAGE | 0xFFFFFFFF, -1),
    ("int", 0x80000000, -(1 << 31)),
    ("int", GARBAGE | 5, 5),
    ("unsigned int", GARBAGE | 0xFFFFFFFF, 0xFFFFFFFF),
    ("umode_t", 0x12345, 0x2345),
    ("off_t", (1 << 64) - 9, -9),
    ("loff_t", 1 << 63, -(1 << 63)),
    ("size_t", (1 << 64) - 1, (1 << 64) - 1),
    ("unsigned long", 1 << 63, 1 << 63),
    ("const char __user *", 0xFFFF888000000000, 0xFFFF888000000000),
])
def test_arguments_convert_as_their_c_type(ctype, value, expected):
    assert convert_arg(ctype, value) == expected


def test_dispatch_converts_each_argument_by_the_calls_declaration():
    regs = (GARBAGE | 0xFFFFFFFF, 0x1000, GARBAGE | 3, 7, 8, 9)
    assert SYSCALL_ARGS[61](*regs) == (-1, 0x1000, 3, 7, 0, 0)             # wait4(pid_t, int *, int, rusage *)
    assert SYSCALL_ARGS[8](5, (1 << 64) - 9, GARBAGE | 1, 0, 0, 0) == (5, -9, 1, 0, 0, 0)   # lseek
    assert SYSCALL_ARGS[62](GARBAGE | 42, 0xFFFF888000000000, 0, 0, 0, 0)[:2] == (42, 0)   # kill
    for nr, (_, args) in SYSCALLS.items():
        converted = SYSCALL_ARGS[nr](*regs)
        assert converted[:len(args)] == tuple(convert_arg(t, r) for (t, _), r in zip(args, regs))
    # the entries dispatch calls hand their handlers the same values
    for nr in SYSCALL_TABLE:
        entry = _make_entry(lambda k, task, *values: values, SYSCALLS[nr][1])
        assert entry(None, None, *regs) == SYSCALL_ARGS[nr](*regs)


def test_each_entry_is_made_once_at_its_calls_first_use():
    # dispatch's entry of every implemented call: its handler behind its declaration's conversions,
    # made once and kept; none for a named call that is not implemented (tuxcall) or an unnamed number
    for nr, handler in SYSCALL_TABLE.items():
        entry = syscall_entry(nr)
        assert entry is syscall_entry(nr) is SYSCALL_ENTRIES[nr]
        assert inspect.getclosurevars(entry).nonlocals["handler"] is handler
    assert set(SYSCALL_ENTRIES) == set(SYSCALL_TABLE)
    assert syscall_entry(184) is None and syscall_entry(1000) is None
    assert 184 not in SYSCALL_ENTRIES and 1000 not in SYSCALL_ENTRIES


def test_unknown_calls_are_enosys_and_named_once(compile_c):
    exe = compile_c(r"""
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(void)
{
    long a = syscall(184, 0, 0, 0), b = syscall(184, 0, 0, 0), c = syscall(1000), d = syscall(-1L);
    printf("%ld %ld %ld %ld\n", a, b, c, d);
    return 0;
}
""", "unknown_calls")
    run = boot(exe.read_bytes(), name="unknown_calls", inspect=lambda m: {"log": m.kernel.printk.log,
                                                                            "counts": m.kernel.unknown_syscalls})
    assert b"-1 -1 -1 -1\n" in run.output
    log = [text for _, _, text in run.extra["log"] if "unknown system call" in text]
    assert log == ["unknown_calls[1]: unknown system call 184 (tuxcall)", "unknown_calls[1]: unknown system call 1000",
                   "unknown_calls[1]: unknown system call 4294967295"]
    assert run.extra["counts"] == {184: 2, 1000: 1, 0xFFFFFFFF: 1}
