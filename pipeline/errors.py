"""Typed errors: each carries a message a user can act on."""


class BitCipherError(Exception):
    """Base class of every error this package raises on purpose."""

    exit_code = 1


class OptionError(BitCipherError, ValueError):
    """An option is out of range or of the wrong kind."""

    exit_code = 2


class InputError(BitCipherError, ValueError):
    """The corpus is missing, empty, binary or malformed."""

    exit_code = 3


class LakeError(BitCipherError):
    """The lake holds something this version cannot read or must not overwrite."""

    exit_code = 4


class CapacityError(OptionError):
    """The vocabulary has more words than `bits` can give distinct codes."""
