"""bit-cipher: word vectors from sharded corpora on Spark and Delta Lake, without backpropagation."""

from bitcipher.build import BuildResult, build
from bitcipher.stages.cipher import Cipher, build_cipher, code_positions, smallest_bits
from bitcipher.errors import BitCipherError, CapacityError, InputError, LakeError, OptionError
from bitcipher.lake.tables import Lake
from bitcipher.options import DEFAULTS, BuildOptions
from bitcipher.runtime.session import spark_session

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
