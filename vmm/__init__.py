import gc


_machine_built = False          # set by the first Machine: from then on nothing is frozen


def machine_built() -> None:
    global _machine_built
    _machine_built = True


class loading_modules:
    """`with loading_modules():` around the imports of the kernel, the devices and their libraries:
    ~24,000 objects that live as long as the process. The collector's passes while they load (about
    45) find nothing to free, so it waits until they are in, and then they go straight to its
    permanent generation (gc.freeze) instead of being walked again by every full pass after. Nests.

    Only before the first machine: a frozen object is never collected and never scanned, so a machine
    referred to from one (even from a closure cell of a frame alive at the freeze) could not be freed."""

    def __enter__(self):
        self.collecting = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc):
        if self.collecting:
            if not _machine_built:
                gc.freeze()
            gc.enable()
