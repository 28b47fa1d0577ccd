"""A device's counters: attributes named by the class body's annotations, each starting at a copy of its
default, with a dataclass's keyword constructor, equality and repr. (Not a dataclass: one compiles its
methods at every start, ~2 M instructions a class.)"""
from copy import copy


class Counters:
    _names: tuple = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._names = tuple(cls.__annotations__)

    def __init__(self, **values):
        unknown = values.keys() - set(self._names)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no counter {', '.join(sorted(unknown))}")
        for name in self._names:
            setattr(self, name, values[name] if name in values else copy(getattr(type(self), name)))

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self._names}

    def __eq__(self, other):
        return type(other) is type(self) and self.as_dict() == other.as_dict()

    __hash__ = None                         # mutable, as a dataclass with eq

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.as_dict().items())})"
