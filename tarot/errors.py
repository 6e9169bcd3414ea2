"""The one exception type the command-line scripts turn into a one-line message and exit code 2."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (library errors can run to pages)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class UsageError(Exception):
    """Bad input from the user: a flag value, a missing file, a model that cannot be reached.

    The message names the flag and what is allowed; the scripts print it without a traceback.
    """
