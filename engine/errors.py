"""The one exception type for bad user input across the engine.

Raise `InputError` with a message that says which input was wrong and what to do;
the CLI prints it as one line and the app shows it as a message, never a traceback.
"""


class InputError(ValueError):
    """Bad input from a user: a file, an argument, a data set, a law, a budget."""
