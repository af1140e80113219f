"""The one error type that means "the user gave us something wrong".

Everything that reads user files or arguments raises `InputError` with a message that names the
file or field and what is wrong; the CLI turns it into one line on stderr and exit code 2. Any
other exception is a bug in m2nas and is allowed to show its traceback.
"""


class InputError(ValueError):
    """Bad user input: a malformed file, an unknown name, an impossible request."""
