"""Reclaim policies by name: the registry the reclaim path looks them up in (docs/policies.md).

A policy is one class, declared once under the name users choose it by, that overrides the hooks it
provides into the one reclaim path (cython_ext/reclaim.py decides, guestos/mm/vmscan.py loops):

- `allocator_fastpath(k)`: the allocator, at each look at the watermarks (get_page_from_freelist);
  may wake kswapd.
- `kswapd_pass(k)`: kswapd, once woken, before balance_pgdat. A generator: it yields where kswapd may
  give up the CPU.
- `balance_pgdat_pass(k)`: inside balance_pgdat, at each priority, before the watermark check and
  again before shrink_zone. A generator as kswapd_pass; returns the pages it freed.
- `direct_reclaim_pass(k, nr_to_reclaim)`: the allocator's direct reclaim, before try_to_free_pages;
  returns the pages it freed.
- `balloon_pages(k, nr_pages)`: before the allocator hands pages to the balloon with the policy's
  GFP flag (cache first: __GFP_FREE_CACHE); returns the pages it freed.
- `keep_page(k, sc, pfn)`: inside shrink_page_list, for a mapped or anonymous page the first tests
  let through: True keeps it (a file page) or activates it (an anonymous one), traced with the
  policy's `keep_reason` (default: its name); a policy with this hook names ordinary reclaim's passes
  in the trace.

How a policy is chosen: `sysctl = (knob, value)` selects it while /proc/sys/vm/knob holds that value
(switchable at run time), `reclaim_policy=NAME[,NAME]` on the command line selects any registered one
at boot, and a policy without either (cache_first) is asked for by name by its caller."""

REGISTRY = {}                   # name -> the policy (one instance per class)

HOOKS = ("allocator_fastpath", "kswapd_pass", "balance_pgdat_pass", "direct_reclaim_pass", "balloon_pages",
         "keep_page")


class UnknownPolicy(KeyError):
    def __str__(self) -> str:
        return self.args[0]


class ReclaimPolicy:
    """The base of every policy: each hook does nothing until a policy overrides it."""
    name = ""                   # the registry's key: what users choose it by
    trace_name = ""             # `policy` in the trace of its passes (docs/trace.md); default: name
    sysctl = None               # (vm knob, value) that selects it, or None
    keep_reason = ""            # `reason` in the trace of a page its keep_page kept; default: its name
    cmdline_words = ()          # the words of the boot option `knob=WORD` that select it

    def allocator_fastpath(self, k) -> None:
        pass

    def kswapd_pass(self, k):
        return
        yield                   # a generator

    def balance_pgdat_pass(self, k):
        return 0
        yield                   # a generator

    def direct_reclaim_pass(self, k, nr_to_reclaim: int) -> int:
        return 0

    def balloon_pages(self, k, nr_pages: int) -> int:
        return 0

    def keep_page(self, k, sc, pfn: int) -> bool:
        return False

    def provides(self, hook: str) -> bool:
        return getattr(type(self), hook) is not getattr(ReclaimPolicy, hook)


def register(cls):
    """Class decorator: put a ReclaimPolicy subclass in the registry under its name."""
    if not cls.name or not issubclass(cls, ReclaimPolicy):
        raise ValueError(f"{cls!r}: a reclaim policy is a ReclaimPolicy subclass with a name")
    if cls.name in REGISTRY and type(REGISTRY[cls.name]) is not cls:
        raise ValueError(f"reclaim policy {cls.name!r} is registered already")
    other = by_sysctl(*cls.sysctl) if cls.sysctl is not None else None
    if other is not None and other.name != cls.name:
        raise ValueError(f"vm.{cls.sysctl[0]} = {cls.sysctl[1]} selects {other.name!r} already")
    if not cls.trace_name:
        cls.trace_name = cls.name
    if not cls.keep_reason:
        cls.keep_reason = cls.name
    REGISTRY[cls.name] = cls()
    return cls


def unregister(name: str) -> None:
    REGISTRY.pop(name, None)


def lookup(name: str) -> ReclaimPolicy:
    """The policy of this name; UnknownPolicy (a one-line message) when there is none."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownPolicy(f"unknown reclaim policy {name!r} (one of {', '.join(names())})") from None


def names() -> list:
    return list(REGISTRY)


def by_sysctl(knob: str, value: int):
    """The policy that /proc/sys/vm/knob = value selects, or None."""
    for policy in REGISTRY.values():
        if policy.sysctl == (knob, value):
            return policy
    return None


def cmdline_words(knob: str) -> dict:
    """The boot option `knob=WORD` (the policies' cmdline_words): word -> the policy's name."""
    return {word: p.name for p in REGISTRY.values() if p.sysctl is not None and p.sysctl[0] == knob
            for word in p.cmdline_words}


class PolicySet:
    """One kernel's selected policies, in registration order, and the hooks they provide: what the
    reclaim path calls. Rebuilt at boot and whenever a selecting sysctl is written."""

    def __init__(self, k, boot_names=()):
        self.k = k
        self.boot_names = tuple(boot_names)
        for name in self.boot_names:
            lookup(name)
        self.refresh()

    def refresh(self) -> None:
        sysctl_vm = self.k.sysctl_vm
        self.selected = [p for p in REGISTRY.values()
                         if p.name in self.boot_names or (p.sysctl is not None and sysctl_vm.get(p.sysctl[0]) ==
                                                          p.sysctl[1])]
        for hook in HOOKS:
            setattr(self, "_" + hook, [p for p in self.selected if p.provides(hook)])
        self.keep_pages = bool(self._keep_page)          # shrink_page_list asks keep_page at all
        # ordinary reclaim's passes carry the name of a policy biasing them
        self.plain_trace_name = self._keep_page[0].trace_name if self._keep_page else "none"

    def __contains__(self, name: str) -> bool:
        return any(p.name == name for p in self.selected)

    # --- the hooks, as the reclaim path calls them ---
    def allocator_fastpath(self) -> None:
        for p in self._allocator_fastpath:
            p.allocator_fastpath(self.k)

    def kswapd_passes(self):
        """kswapd's policy passes before balance_pgdat (a generator, as kswapd's work)."""
        for p in self._kswapd_pass:
            yield from p.kswapd_pass(self.k)

    def balance_pgdat_passes(self):
        """The policies' passes inside balance_pgdat (a generator); returns the pages they freed."""
        freed = 0
        for p in self._balance_pgdat_pass:
            freed += yield from p.balance_pgdat_pass(self.k)
        return freed

    def direct_reclaim_pass(self, nr_to_reclaim: int) -> int:
        freed = 0
        for p in self._direct_reclaim_pass:
            if freed >= nr_to_reclaim:
                break
            freed += p.direct_reclaim_pass(self.k, nr_to_reclaim - freed)
        return freed

    def balloon_pages(self, name: str, nr_pages: int) -> int:
        return lookup(name).balloon_pages(self.k, nr_pages)

    def keep_page(self, sc, pfn: int) -> str | None:
        """The keep_reason of the first selected policy that keeps the page, or None."""
        for p in self._keep_page:
            if p.keep_page(self.k, sc, pfn):
                return p.keep_reason
        return None


# the built-in policies, registered first whichever module is imported first
from . import pagecache_control         # noqa: E402,F401
