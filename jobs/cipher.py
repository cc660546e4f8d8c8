"""Job cipher: the `unigrams` table -> a code and smoothed base vector per word, the
`cipher` table (Parquet).

    spark-submit jobs/cipher.py --unigrams /tmp/stages/unigrams --out /tmp/stages/cipher
"""

import argparse
import sys
from typing import Optional, Sequence

import numpy as np

from bitcipher.builder import cipher_frame
from bitcipher.stages.cipher import build_cipher
from bitcipher.errors import LakeError
from bitcipher.options import BuildOptions
from bitcipher.lake.schemas import check_schema
from bitcipher.cli import HelpFormatter as _Formatter
from bitcipher.cli import add_master, add_options, guarded
from bitcipher.runtime.session import spark_session

EXAMPLE = ("example:\n  spark-submit --packages io.delta:delta-spark_4.1_2.13:4.4.0 "
           "jobs/cipher.py --unigrams /tmp/stages/unigrams --out /tmp/stages/cipher --bits 32")


def _bits(value: str):
    return value if value == "auto" else int(value)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="jobs/cipher.py", formatter_class=_Formatter, epilog=EXAMPLE,
        description="Stage cipher: give the word of rank r code r and its smoothed base\n"
                    "vector; write the cipher table (word, id, count, code, rep) as Parquet.")
    p.add_argument("--unigrams", required=True, help="unigrams table (jobs/unigrams.py)")
    p.add_argument("--out", required=True, help="output folder or URI (overwritten)")
    add_options(p, "bits", "smoothing")
    add_master(p)
    return p


def read_vocabulary(spark, path: str) -> tuple[list[str], np.ndarray]:
    """Words and counts of a unigrams table, in id order."""
    unigrams = spark.read.parquet(path)
    check_schema(unigrams, "unigrams", path)
    table = unigrams.orderBy("id").toArrow()
    ids = table.column("id").to_numpy()
    if not np.array_equal(ids, np.arange(len(ids))):
        raise LakeError(f"unigrams table {path} does not hold ids 0..{len(ids) - 1}")
    return table.column("word").to_pylist(), table.column("count").to_numpy().astype(np.int64)


def run(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)
    options = BuildOptions(bits=args.bits, smoothing=args.smoothing)
    spark = spark_session(master=args.master)
    words, counts = read_vocabulary(spark, args.unigrams)
    cipher = build_cipher(counts, options.bits, options.smoothing)
    cipher_frame(spark, words, cipher).coalesce(1).write.mode("overwrite").parquet(args.out)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return guarded(run, "cipher", argv)


if __name__ == "__main__":
    sys.exit(main())
