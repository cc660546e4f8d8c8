"""bit-cipher: word vectors from sharded corpora on Spark and Delta Lake, without backpropagation.

Importing this package starts no JVM and imports no pyspark: Spark comes in when a session
is asked for (:func:`spark_session`, :func:`build`, :func:`refresh`, or
:func:`load_vectors` with the Spark engine).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Optional, Union


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("bit-cipher")
    except PackageNotFoundError:  # a source checkout on sys.path, not installed
        return _SOURCE_VERSION


_SOURCE_VERSION = "0.2.0"  # = [project] version in pyproject.toml (a test keeps them equal)
__version__ = _version()

from bitcipher.builder import BuildResult, build  # noqa: E402
from bitcipher.errors import (  # noqa: E402
    BitCipherError, CapacityError, InputError, LakeError, OptionError)
from bitcipher.lake.tables import Lake  # noqa: E402
from bitcipher.options import DEFAULTS, BuildOptions  # noqa: E402
from bitcipher.incremental.run import refresh  # noqa: E402
from bitcipher.runtime.session import spark_session  # noqa: E402
from bitcipher.stages.cipher import (  # noqa: E402
    Cipher, build_cipher, code_positions, smallest_bits)

if TYPE_CHECKING:
    from bitcipher.query.keyed_vectors import KeyedVectors

ENGINES = ("auto", "fast", "spark")


def load_vectors(lake: Union[str, "os.PathLike[str]", Lake], as_of=None,
                 engine: str = "auto", master: Optional[str] = None) -> "KeyedVectors":
    """The word vectors a lake publishes, as :class:`~bitcipher.query.keyed_vectors.
    KeyedVectors` (``most_similar``, ``similarity``, ``vector``, ``to_gensim``...).

    Parameters
    ----------
    lake : str, os.PathLike or Lake
        The lake: a directory, ``file://`` or ``s3a://`` URI.
    as_of : int or str, optional
        Read the vectors as they were at this Delta version of the ``vectors`` table, or at
        this ISO 8601 timestamp (the last version at or before it; UTC without a zone);
        ``bitcipher history`` lists the versions. Default: the latest.
    engine : {"auto", "fast", "spark"}
        "fast" reads the Delta table with delta-rs and pyarrow, without a JVM (needs the
        ``deltalake`` package: ``pip install 'bit-cipher[sql]'``); "spark" reads it through
        :func:`spark_session` (the active session if there is one); "auto" is "fast" for a
        local lake when deltalake is installed and no `master` is given, else "spark".
        Both give the same words, counts and float32 vectors.
    master : str, optional
        Spark master URL for the "spark" engine (default ``$BITCIPHER_MASTER`` or
        ``local[*]``).

    Raises
    ------
    LakeError
        No published bit-cipher build in `lake`, a lake of another format version, or no
        version at `as_of`.
    OptionError
        An unknown `engine`.

    Examples
    --------
    >>> import bitcipher
    >>> kv = bitcipher.load_vectors("./lake")                    # doctest: +SKIP
    >>> kv.most_similar("king", 5)                               # doctest: +SKIP
    >>> old = bitcipher.load_vectors("./lake", as_of=0)          # doctest: +SKIP
    """
    from bitcipher.lake.history import resolve_version
    from bitcipher.query.fast_read import use_fast_engine

    if engine not in ENGINES:
        raise OptionError(f"engine must be one of {', '.join(ENGINES)}; got {engine!r}")
    lake = lake if isinstance(lake, Lake) else Lake(os.fspath(lake))
    version = None if as_of is None else resolve_version(lake, as_of)
    if use_fast_engine(lake, engine, master=master):
        from bitcipher.query.fast_read import keyed_vectors

        return keyed_vectors(lake, version)
    from bitcipher.lake.tables import read_table
    from bitcipher.query.keyed_vectors import KeyedVectors

    spark = spark_session(master=master, storage=[lake.root])
    return KeyedVectors.from_frame(read_table(spark, lake, "vectors", as_of=version))


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
    "__version__",
    "build",
    "build_cipher",
    "code_positions",
    "load_vectors",
    "refresh",
    "smallest_bits",
    "spark_session",
]
