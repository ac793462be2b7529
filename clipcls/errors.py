"""The base of every error caused by user input (config, data, files): printed, not traced."""


class ClipclsError(Exception):
    """A problem with the user's input, with a message naming the key, class or file at fault."""
