"""Builds the native modules in cython_ext/ (the rest is pure Python)."""
from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = [
    Extension("cython_ext.mmu", ["cython_ext/mmu.pyx"], extra_compile_args=["-O2"]),
    # pure-Python mode: the same .py runs uncompiled with BALLAST_PURE=1
    Extension("cython_ext.usercopy", ["cython_ext/usercopy.py"], extra_compile_args=["-O2"]),
    Extension("cython_ext.virtq", ["cython_ext/virtq.py"], extra_compile_args=["-O2"]),
    Extension("cython_ext.hostcache", ["cython_ext/hostcache.py"], extra_compile_args=["-O2"]),
    Extension("cython_ext.reclaim", ["cython_ext/reclaim.py"], extra_compile_args=["-O2"]),
    Extension("cython_ext.pagecache", ["cython_ext/pagecache.py"], extra_compile_args=["-O2"]),
]

setup(ext_modules=cythonize(extensions, compiler_directives={"language_level": "3"}))
