"""bit-cipher: word vectors from sharded corpora on Spark and Delta Lake, without backpropagation.

The names below are imported on first use (PEP 562), so a quick lookup
(`bitcipher neighbors --engine fast`) does not pay for the build's imports.
"""

from importlib import import_module

_WHERE = {
    "BuildResult": ".build",
    "build": ".build",
    "Cipher": ".cipher",
    "build_cipher": ".cipher",
    "code_positions": ".cipher",
    "smallest_bits": ".cipher",
    "BitCipherError": ".errors",
    "CapacityError": ".errors",
    "InputError": ".errors",
    "LakeError": ".errors",
    "OptionError": ".errors",
    "Lake": ".lake",
    "DEFAULTS": ".options",
    "BuildOptions": ".options",
    "spark_session": ".session",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
    value = getattr(import_module(_WHERE[name], __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
