"""Job tokenize: corpus shards -> the `tokens` table (Parquet, schemas/tokens.json).

    spark-submit jobs/tokens.py --corpus data/kjv --out /tmp/stages/tokens

"""

import argparse
import os
import sys
from typing import Optional, Sequence

EXAMPLE = ("example:\n  spark-submit --packages io.delta:delta-spark_4.1_2.13:4.4.0 "
           "jobs/tokens.py --corpus data/kjv --out /tmp/stages/tokens")


def parser() -> argparse.ArgumentParser:
    from bitcipher.cli import HelpFormatter as _Formatter
    from bitcipher.cli import add_master, add_options

    p = argparse.ArgumentParser(
        prog="jobs/tokens.py", formatter_class=_Formatter, epilog=EXAMPLE,
        description="Stage tokenize: read corpus shards and write the tokens table\n"
                    "(shard, tokens, invalid_utf8) as Parquet, one row per document.")
    p.add_argument("--corpus", nargs="+", required=True,
                   help="shard directory, glob or file (several allowed)")
    p.add_argument("--out", required=True, help="output folder or URI (overwritten)")
    add_options(p, "keep_case", "max_document_tokens", "format", "text_field")
    add_master(p)
    return p


def run(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)
    from bitcipher.stages.corpus import check_shards, list_shards, read_documents
    from bitcipher.errors import InputError
    from bitcipher.options import BuildOptions
    from bitcipher.lake.schemas import conform
    from bitcipher.runtime.session import spark_session
    from bitcipher.stages.tokenize import tokenize_documents

    options = BuildOptions(lowercase=not args.keep_case,
                           max_document_tokens=args.max_document_tokens,
                           input_format=args.input_format, text_field=args.text_field)
    shards = list_shards(args.corpus, options.input_format)
    for warning in check_shards(shards):
        print(f"warning: {warning}", file=sys.stderr)
    spark = spark_session(master=args.master)
    docs = read_documents(spark, shards, options.text_field)
    if docs is None:
        raise InputError(f"corpus {args.corpus!r} holds only empty shards: nothing to tokenize")
    if any(s.format == "jsonl" for s in shards):
        bad = docs.where(docs.bad_record.isNotNull()).select("shard", "bad_record").first()
        if bad is not None:
            raise InputError(f"shard {bad['shard']}: {bad['bad_record']}")
    tokens = docs.transform(tokenize_documents(options.lowercase, options.max_document_tokens))
    conform(tokens, "tokens").write.mode("overwrite").parquet(args.out)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    from bitcipher.cli import guarded

    return guarded(run, "tokenize", argv)


if __name__ == "__main__":
    sys.exit(main())
