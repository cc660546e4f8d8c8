"""Job tokenize: corpus shards -> the `tokens` table (Parquet, schemas/tokens.json).

    spark-submit jobs/tokenize.py --corpus data/kjv --out /tmp/stages/tokens

This file shares its name with the standard library's `tokenize`, which pyspark imports
(through `inspect`). Two guards keep the two apart: run as a script, this file's folder is
taken off sys.path before anything else is imported; and a Python process whose working
folder is jobs/ (Spark's Python workers, when the job was started from there) that finds
this file for `import tokenize` is handed the standard library's module instead. Hence
everything else is imported inside the functions.
"""

import argparse
import os
import sys
from typing import Optional, Sequence

_JOBS = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _JOBS]
if __name__ == "tokenize":
    import importlib

    del sys.modules[__name__]
    # the import system reads sys.modules back once this file has run
    sys.modules[__name__] = importlib.import_module("tokenize")

EXAMPLE = ("example:\n  spark-submit --packages io.delta:delta-spark_4.1_2.13:4.4.0 "
           "jobs/tokenize.py --corpus data/kjv --out /tmp/stages/tokens")


def _import_pipeline() -> None:
    try:
        import pipeline  # noqa: F401
    except ImportError:  # a checkout without `pip install -e .`
        sys.path.insert(0, os.path.dirname(_JOBS))


def parser() -> argparse.ArgumentParser:
    _import_pipeline()
    from pipeline.cli import HelpFormatter as _Formatter
    from pipeline.cli import add_master, add_options

    p = argparse.ArgumentParser(
        prog="jobs/tokenize.py", formatter_class=_Formatter, epilog=EXAMPLE,
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
    from pipeline.corpus import check_shards, list_shards, read_documents
    from pipeline.errors import InputError
    from pipeline.options import BuildOptions
    from pipeline.schemas import conform
    from pipeline.session import spark_session
    from pipeline.tokenize import tokenize_documents

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
    _import_pipeline()
    from pipeline.cli import guarded

    return guarded(run, "tokenize", argv)


if __name__ == "__main__":
    sys.exit(main())
