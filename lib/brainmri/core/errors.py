"""Errors a user can act on. Each message says what went wrong and what to do next."""


class BrainMRIError(Exception):
    """Base class: the notebooks and the CLI print these as one message, not a traceback."""


class DatasetNotFoundError(BrainMRIError):
    pass


class WeightsUnavailableError(BrainMRIError):
    pass


class ProfileError(BrainMRIError):
    pass
