"""The one exception base for bad user input. The CLI prints these as one line and exits 2, without traceback.

Every layer defines its own subclasses (e.g. ``ArchitectureError`` in model/, ``VideoDecodeError`` in data/);
this module imports nothing, so any layer may use it.
"""


class VificlipError(Exception):
    """Bad input: a file, field or value the user can fix. The message names it and what was expected."""
