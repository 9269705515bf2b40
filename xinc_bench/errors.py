"""The one exception type for bad input.

Errors are raised once, at the boundary where input enters (command line, file readers,
registry look-ups), with a message that names the problem and the fix. The core trusts
its inputs.
"""


class XincError(Exception):
    """Bad input: the message names what is wrong and how to fix it."""
