"""Native code shared by the VMM and the guest kernel. Modules written in Cython's
pure-Python mode also run uncompiled: set BALLAST_PURE=1 to step through them in pdb.

Under BALLAST_PURE=1 each such module is imported under its own name from its .py source
(`cython_ext.reclaim` is cython_ext/reclaim.py), so pdb finds it by that name:
`b cython_ext.reclaim:LINE`, `b cython_ext.reclaim.Reclaim.shrink_page_list`."""
import importlib
import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path

PURE = os.environ.get("BALLAST_PURE", "") not in ("", "0")
_NAMED_PURE = PURE          # what `import cython_ext.X` gives in this process (PURE may be changed by tests)
_HERE = Path(__file__).parent


def _source(name: str):
    path = _HERE / f"{name}.py"
    return path if path.is_file() else None


class _PureSourceFinder:
    """BALLAST_PURE=1: `import cython_ext.X` takes X.py even where the compiled X.so sits beside it. A meta
    path finder needs only find_spec (importlib.abc's base class would load importlib.abc at every start)."""

    def find_spec(self, fullname, path=None, target=None):
        package, _, name = fullname.rpartition(".")
        if package != __name__ or _source(name) is None:
            return None
        return importlib.util.spec_from_file_location(fullname, _source(name))


if PURE and not any(isinstance(f, _PureSourceFinder) for f in sys.meta_path):
    sys.meta_path.insert(0, _PureSourceFinder())


def load(name: str, pure: bool = None):
    """cython_ext.<name>, compiled unless pure (or BALLAST_PURE) asks for its Python source. The
    module of the process's own mode carries the real name; the other one (a differential test
    asks for both) is a private copy."""
    pure = PURE if pure is None else pure
    if pure == _NAMED_PURE:
        return importlib.import_module(f"{__name__}.{name}")
    if pure:
        spec = importlib.util.spec_from_file_location(f"{__name__}._pure_{name}", _source(name))
    else:       # the compiled module while the process runs pure: found past the source finder
        spec = importlib.machinery.PathFinder.find_spec(f"{__name__}.{name}", __path__)
        if spec is None or not isinstance(spec.loader, importlib.machinery.ExtensionFileLoader):
            raise ImportError(f"cython_ext.{name} is not compiled (pip install -e . builds it)")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _lookupmodule_by_name(original):
    """pdb before Python 3.13 takes only file names in `break FILE:LINE`: module names too, as 3.13's."""
    def lookupmodule(self, filename):
        found = original(self, filename)
        if found is None and not filename.endswith(".py") and "." in filename.strip("."):
            try:
                spec = importlib.util.find_spec(filename)
            except (ImportError, ValueError):
                spec = None
            if spec is not None and spec.origin and spec.origin.endswith(".py"):
                return spec.origin
        return found
    return lookupmodule


def _lineinfo_by_name(original):
    """pdb's `break a.b.function` evaluates the name in the current frame: from any frame, a dotted
    name of an imported module's function (`b guestos.mm.vmscan.shrink_zone`) works too."""
    def lineinfo(self, identifier):
        found = original(self, identifier)
        if found[0] is not None:
            return found
        parts = identifier.strip().split(".")
        for i in range(len(parts) - 1, 0, -1):
            obj = sys.modules.get(".".join(parts[:i]))
            if obj is None:
                continue
            for name in parts[i:]:
                obj = getattr(obj, name, None)
            code = getattr(getattr(obj, "__func__", obj), "__code__", None)
            if code is not None:
                return code.co_name, code.co_filename, code.co_firstlineno
            break
        return found
    return lineinfo


def teach_pdb() -> None:
    """Give pdb's `break` module names: `b cython_ext.reclaim:LINE` (Python < 3.13 took only file
    names) and `b guestos.mm.vmscan.FUNCTION` from any frame. Done under BALLAST_PURE=1 at import when
    pdb is there (`python -m pdb`), and by the Ballast debugger's `py`."""
    pdb = sys.modules.get("pdb")
    if pdb is None or getattr(pdb.Pdb, "_ballast_names", False):
        return
    if sys.version_info < (3, 13):
        pdb.Pdb.lookupmodule = _lookupmodule_by_name(pdb.Pdb.lookupmodule)
    pdb.Pdb.lineinfo = _lineinfo_by_name(pdb.Pdb.lineinfo)
    pdb.Pdb._ballast_names = True


if PURE:
    teach_pdb()
