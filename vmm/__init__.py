import gc


class loading_modules:
    """`with loading_modules():` around the imports of the kernel, the devices and their libraries:
    ~24,000 objects that live as long as the process. The collector's passes while they load (about
    45) find nothing to free, so it waits until they are in, and then they go straight to its
    permanent generation (gc.freeze, as machine._freeze_loaded_objects does before the first machine)
    instead of being walked once more by the first pass after. Nests."""

    def __enter__(self):
        self.collecting = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc):
        if self.collecting:
            gc.freeze()
            gc.enable()
