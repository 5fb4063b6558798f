"""The one exception users see: the CLI prints its message on one line and exits with status 2."""


class UserError(Exception):
    """Bad input from the user (a missing file, an unknown option, corrupt data): no traceback, exit 2."""
