"""Ballast's guest programs, prebuilt (static x86-64 ELF in bin/; sources in src/, `make -C firmware`).

Installed as the package `ballast_firmware`, so a wheel carries them and `vmm.firmware` finds them
through importlib.resources wherever ballast is installed."""
