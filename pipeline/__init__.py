"""bit-cipher: word vectors from sharded corpora on Spark and Delta Lake, without backpropagation."""

from .build import BuildResult, build
from .cipher import Cipher, build_cipher, code_positions, smallest_bits
from .errors import BitCipherError, CapacityError, InputError, LakeError, OptionError
from .lake import Lake
from .options import DEFAULTS, BuildOptions
from .session import spark_session

__all__ = [
    "BitCipherError",
    "BuildOptions",
    "BuildResult",
    "CapacityError",
    "Cipher",
    "DEFAULTS",
    "InputError",
    "Lake",
    "LakeError",
    "OptionError",
    "build",
    "build_cipher",
    "code_positions",
    "smallest_bits",
    "spark_session",
]
