"""Job unigrams: the `tokens` table -> the ranked vocabulary, the `unigrams` table (Parquet).

    spark-submit jobs/unigrams.py --tokens /tmp/stages/tokens --out /tmp/stages/unigrams
"""

import argparse
import sys
from typing import Optional, Sequence

from bitcipher.errors import InputError
from bitcipher.options import BuildOptions
from bitcipher.lake.schemas import check_schema
from bitcipher.cli import HelpFormatter as _Formatter
from bitcipher.cli import add_master, add_options, guarded
from bitcipher.runtime.session import spark_session
from bitcipher.stages.unigrams import collect_vocabulary, count_tokens, unigram_frame

EXAMPLE = ("example:\n  spark-submit --packages io.delta:delta-spark_4.1_2.13:4.4.0 "
           "jobs/unigrams.py --tokens /tmp/stages/tokens --out /tmp/stages/unigrams")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="jobs/unigrams.py", formatter_class=_Formatter, epilog=EXAMPLE,
        description="Stage unigrams: count the tokens, keep those seen at least --min-count\n"
                    "times (the rest become <unk>), rank them, and write the unigrams table\n"
                    "(word, count, id) as Parquet.")
    p.add_argument("--tokens", required=True, help="tokens table (jobs/tokens.py)")
    p.add_argument("--out", required=True, help="output folder or URI (overwritten)")
    add_options(p, "min_count", "max_vocab")
    add_master(p)
    return p


def run(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)
    options = BuildOptions(min_count=args.min_count, max_vocab=args.max_vocab)
    spark = spark_session(master=args.master)
    tokens = spark.read.parquet(args.tokens)
    check_schema(tokens, "tokens", args.tokens)
    word_counts = tokens.transform(count_tokens).persist()  # one row per token type
    vocab = collect_vocabulary(word_counts, options.min_count, options.max_vocab)
    word_counts.unpersist()
    if vocab.total == 0:
        raise InputError(f"tokens table {args.tokens} holds no tokens: nothing to count")
    unigram_frame(spark, vocab).coalesce(1).write.mode("overwrite").parquet(args.out)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return guarded(run, "unigrams", argv)


if __name__ == "__main__":
    sys.exit(main())
