"""The one error the field kit raises for anything it refuses: the CLI prints it and exits non-zero."""


class FieldError(Exception):
    """A refused input or an unusable case folder, with a message that says which and why."""
