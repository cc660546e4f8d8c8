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


class ConflictError(BitCipherError):
    """Another refresh or build changed the lake at the same time; nothing of this run was
    committed. Run it again."""

    exit_code = 6


EXIT_OK = 0
"""Exit codes a scheduler can act on: 0 done; 1 unexpected failure; 2 bad option
(OptionError); 3 bad input (InputError); 4 lake unusable (LakeError); 5 nothing to do
(`bitcipher refresh` found no changed shard and the published vectors are current);
6 conflict with a concurrent refresh or build (ConflictError): retry later."""
EXIT_NOTHING_TO_DO = 5
