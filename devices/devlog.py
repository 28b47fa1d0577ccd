"""The devices' loggers, with `logging` imported on first use: a run that logs nothing (nearly every
run) does not pay for importing it (about 2 ms of a short CI test's start-up)."""


class DeviceLogger:
    """logging.getLogger(name), looked up the first time a message is logged."""

    def __init__(self, name: str):
        self.name = name

    def __getattr__(self, attr):
        import logging
        return getattr(logging.getLogger(self.name), attr)


def get_logger(name: str) -> DeviceLogger:
    return DeviceLogger(name)
