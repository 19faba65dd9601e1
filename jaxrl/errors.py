"""Errors that the CLI reports as one readable line (exit code 2) instead of a traceback."""


class JaxrlError(Exception):
    """A problem the user can fix; the message names it and the fix."""


class ConfigError(JaxrlError, ValueError):
    """A config key, type or value that cannot work."""


class RunDirError(JaxrlError):
    """A run folder that cannot be used without losing something."""
