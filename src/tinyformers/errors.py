"""The one exception users see: the CLI prints its message on one line and exits with status 2."""


class UserError(Exception):
    """Bad input from the user (a missing file, an unknown option, corrupt data): no traceback, exit 2."""

    exit_code = 2


class Interrupted(UserError):
    """Training stopped by Ctrl-C after saving a checkpoint: exit status 130, as shells report SIGINT."""

    exit_code = 130
