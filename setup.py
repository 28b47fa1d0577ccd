"""Builds the native modules in cython_ext/ (the rest is pure Python) and names the packages:
the prebuilt guest programs in firmware/ are the package `ballast_firmware`."""
from Cython.Build import cythonize
from setuptools import Extension, find_packages, setup

extensions = [
    Extension("cython_ext.mmu", ["cython_ext/mmu.pyx"], extra_compile_args=["-O2"]),
    # pure-Python mode: the same .py runs uncompiled with BALLAST_PURE=1 (the wheel carries both)
    Extension("cython_ext.usercopy", ["cython_ext/usercopy.py"], extra_compile_args=["-O2"]),
    Extension("cython_ext.virtq", ["cython_ext/virtq.py"], extra_compile_args=["-O2"]),
    Extension("cython_ext.hostcache", ["cython_ext/hostcache.py"], extra_compile_args=["-O2"]),
    Extension("cython_ext.reclaim", ["cython_ext/reclaim.py"], extra_compile_args=["-O2"]),
    Extension("cython_ext.pagecache", ["cython_ext/pagecache.py"], extra_compile_args=["-O2"]),
    Extension("cython_ext.rmap", ["cython_ext/rmap.py"], extra_compile_args=["-O2"]),
    Extension("cython_ext.pageout", ["cython_ext/pageout.py"], extra_compile_args=["-O2"]),
]

setup(
    packages=find_packages(include=["vmm*", "devices*", "guestos*", "cython_ext*"]) + ["ballast_firmware"],
    package_dir={"ballast_firmware": "firmware"},
    # data files the code reads at run time (ballast sweep's built-in sweep files live in vmm/sweeps/)
    package_data={"ballast_firmware": ["bin/*", "README.md"], "vmm": ["sweeps/*.toml"]},
    ext_modules=cythonize(extensions, compiler_directives={"language_level": "3"}),
)
