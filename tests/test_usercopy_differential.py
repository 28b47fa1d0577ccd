"""cython_ext.usercopy compiled and uncompiled (the same pure-Python-mode source) do the same."""
from hypothesis import given, settings
from hypothesis import strategies as st

import cython_ext

compiled = cython_ext.load("usercopy", pure=False)
pure = cython_ext.load("usercopy", pure=True)
RAM = 1 << 14


def test_the_compiled_module_is_native():
    assert compiled.__file__.endswith(".so") and pure.__file__.endswith(".py")


runs = st.lists(st.tuples(st.integers(0, RAM - 1), st.integers(0, 700)), max_size=12)


@settings(max_examples=200, deadline=None, database=None)
@given(seed=st.binary(min_size=64, max_size=64), src=runs, dst=runs)
def test_copy_runs_compiled_equals_pure(seed, src, dst):
    base = (seed * (RAM // 64 + 1))[:RAM]
    results = []
    for module in (compiled, pure):
        ram = bytearray(base)
        try:
            copied = module.copy_runs(memoryview(ram), list(src), list(dst))
            results.append(("ok", copied, bytes(ram)))
        except IndexError:
            results.append(("out of RAM",))
    assert results[0] == results[1]


@settings(max_examples=50, deadline=None, database=None)
@given(pages=st.dictionaries(st.integers(0, 100), st.integers(0, 1 << 20)), first=st.integers(0, 100),
       length=st.integers(0, 40))
def test_lookup_pages_compiled_equals_pure(pages, first, length):
    assert compiled.lookup_pages(pages, first, first + length) == pure.lookup_pages(pages, first, first + length)
