"""The one exception type for bad user input across the engine.

Raise `InputError` with a message that says which input was wrong and what to do;
the CLI prints it as one line and the app shows it as a message, never a traceback.
A page shows it through `in_words`, which names a command-line flag as the setting it is.
"""
import re

_FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9]*(?:-[a-z0-9]+)*)")


class InputError(ValueError):
    """Bad input from a user: a file, an argument, a data set, a law, a budget."""


def in_words(message: str) -> str:
    """`message` for a page, where no one types flags: '--target-n' reads 'target n',
    '--bootstrap 200' reads 'bootstrap 200'."""
    return _FLAG.sub(lambda match: match.group(1).replace("-", " "), str(message))
