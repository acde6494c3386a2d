"""Errors meant for the user: the entry point prints their one-line message instead of a traceback."""


class UserError(Exception):
    """Something the user can fix (a config value, a file, a download); the message says what and how."""


class ConfigError(UserError, ValueError):
    """A config value that is not allowed."""


class DataError(UserError):
    """A data source that cannot be read; the message names the file or folder."""
