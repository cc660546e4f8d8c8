"""Job cooccurrences: the `tokens` and `unigrams` tables -> n(t, c, d), the `cooccurrences`
table (Parquet).

    spark-submit jobs/cooccurrences.py --tokens /tmp/stages/tokens \\
        --unigrams /tmp/stages/unigrams --out /tmp/stages/cooccurrences
"""

import argparse
import sys
from typing import Optional, Sequence

from bitcipher.builder import TOKENS_PER_PARTITION, cooccurrence_partitions
from bitcipher.stages.cooccurrences import count_cooccurrences
from bitcipher.errors import LakeError, OptionError
from bitcipher.options import BuildOptions
from bitcipher.lake.schemas import check_schema, conform
from bitcipher.cli import HelpFormatter as _Formatter
from bitcipher.cli import add_master, add_options, guarded
from bitcipher.runtime.session import spark_session
from bitcipher.stages.unigrams import UNK

EXAMPLE = ("example:\n  spark-submit --packages io.delta:delta-spark_4.1_2.13:4.4.0 "
           "jobs/cooccurrences.py --tokens /tmp/stages/tokens --unigrams /tmp/stages/unigrams "
           "--out /tmp/stages/cooccurrences --window 5")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="jobs/cooccurrences.py", formatter_class=_Formatter, epilog=EXAMPLE,
        description="Stage cooccurrences: count how often each context (a word, or EDGE = -1\n"
                    "beyond either end of a document) stands at each offset from each word;\n"
                    "write the cooccurrences table (center, context, offset, count) as Parquet.")
    p.add_argument("--tokens", required=True, help="tokens table (jobs/tokens.py)")
    p.add_argument("--unigrams", required=True, help="unigrams table (jobs/unigrams.py)")
    p.add_argument("--out", required=True, help="output folder or URI (overwritten)")
    p.add_argument("--partitions", type=int, default=None,
                   help="output partitions, one file each (default: spark.bitcipher.partitions, "
                        "or the default parallelism, or one per "
                        f"{TOKENS_PER_PARTITION:,} corpus tokens if that is more)")
    add_options(p, "window", "no_self")
    add_master(p)
    return p


def read_words(spark, path: str) -> tuple[list[str], int]:
    """Words of a unigrams table in id order, and the number of tokens they cover."""
    unigrams = spark.read.parquet(path)
    check_schema(unigrams, "unigrams", path)
    table = unigrams.orderBy("id").toArrow()
    ids = table.column("id").to_pylist()
    words = table.column("word").to_pylist()
    if ids != list(range(len(ids))) or UNK not in words:
        raise LakeError(f"unigrams table {path} does not hold ids 0..{len(ids) - 1} "
                        f"with {UNK} among the words")
    return words, sum(table.column("count").to_pylist())


def run(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)
    options = BuildOptions(window=args.window, include_self=not args.no_self)
    if args.partitions is not None and args.partitions < 1:
        raise OptionError(f"partitions must be >= 1; got {args.partitions}")
    spark = spark_session(master=args.master)
    words, total = read_words(spark, args.unigrams)
    tokens = spark.read.parquet(args.tokens)
    check_schema(tokens, "tokens", args.tokens)
    partitions = args.partitions or cooccurrence_partitions(spark, total)
    cooccurrences = tokens.transform(
        count_cooccurrences(spark, words, words.index(UNK), options.window,
                            options.include_self, partitions)
    )
    conform(cooccurrences, "cooccurrences").write.mode("overwrite").parquet(args.out)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return guarded(run, "cooccurrences", argv)


if __name__ == "__main__":
    sys.exit(main())
