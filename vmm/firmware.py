"""The prebuilt guest programs (firmware/bin, installed as the package `ballast_firmware`), found
through importlib.resources, so an installed wheel finds its own copies and a checkout its own."""
from importlib.resources import files
from pathlib import Path

from .errors import BallastError

PACKAGE = "ballast_firmware"


def bin_dir() -> Path:
    try:
        # an installed package (wheel or editable) is a directory on disk: mkdata runs from it
        return Path(str(files(PACKAGE) / "bin"))
    except ModuleNotFoundError:
        raise BallastError(f"the guest programs ({PACKAGE}) are not installed: reinstall ballast "
                           "(pip install ., or pip install -e . in a checkout)") from None


def program_path(name: str) -> Path:
    """The host path of a guest program; a one-line error if it is missing."""
    path = bin_dir() / name
    if not path.is_file():
        raise BallastError(f"guest program {name} is missing from {path.parent}: "
                           "run make -C firmware, or reinstall ballast")
    return path


def read_program(name: str) -> bytes:
    return program_path(name).read_bytes()
