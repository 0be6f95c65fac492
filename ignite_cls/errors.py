"""The one exception type for mistakes a user can make (bad config, bad data, bad flags).

The entry point turns it into a one-line message and exit code 2; anything else is a bug
and keeps its traceback.
"""


class UserError(Exception):
    """A problem the user can fix; its message is shown on one line, without a traceback."""
