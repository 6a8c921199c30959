"""Errors an operator can act on: the command prints the message, never a traceback."""


class PayopsError(Exception):
    """A mistake or a condition the operator can fix; the message says what and how."""

    exit_code = 2
