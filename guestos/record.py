"""Plain records: classes that keep a few named attributes and print them as a dataclass would, without
a dataclass's methods compiled at every start."""


class Record:
    __slots__ = ()

    def __repr__(self) -> str:
        fields = vars(self).items() if hasattr(self, "__dict__") else \
            ((name, getattr(self, name)) for name in type(self).__slots__)
        return f"{type(self).__name__}({', '.join(f'{name}={value!r}' for name, value in fields)})"
