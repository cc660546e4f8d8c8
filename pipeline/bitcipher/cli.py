"""`bitcipher`: build word vectors into a lake, query them with SQL, find neighbours, export."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable, Optional, Sequence

from bitcipher import __version__
from bitcipher.errors import BitCipherError, OptionError
from bitcipher.options import DEFAULTS, MODES, SMOOTHINGS, TRANSFORMS, WEIGHTINGS, BuildOptions

DEFAULT_LAKE = os.environ.get("BITCIPHER_LAKE", "./lake")

EXAMPLES = {
    "build": "example:\n  bitcipher build --corpus data/kjv --lake ./lake --bits 32 --window 5",
    "sql": "examples:\n  bitcipher sql \"SELECT word, count FROM vectors ORDER BY count DESC LIMIT 5\"\n"
           "  bitcipher sql \"SELECT b.word, cosine(a.vector, b.vector) AS sim FROM vectors a, "
           "vectors b WHERE a.word = 'king' ORDER BY sim DESC LIMIT 10\"\n"
           "tables: vectors(word, id, count, vector), unigrams(word, count, id),\n"
           "  cooccurrences(center, context, offset, count), cipher(word, id, count, code, rep)\n"
           "function: cosine(vector_a, vector_b)",
    "neighbors": "examples:\n  bitcipher neighbors king -k 10 --lake ./lake\n"
                 "  bitcipher neighbors king --engine spark --master spark://HOST:7077\n"
                 "engines: fast reads the Delta table with delta-rs and pyarrow, no JVM (needs\n"
                 "  pip install '.[sql]'); spark reads it with Spark; auto = fast for a local\n"
                 "  lake when deltalake is installed and no --master is given, else spark.\n"
                 "  Both return the same rows and float32 vectors.",
    "serve": "examples:\n  bitcipher serve --lake ./lake --port 10000\n"
             "  beeline -u jdbc:hive2://127.0.0.1:10000 -e \"SELECT word, count FROM vectors "
             "LIMIT 5\"\n"
             "serves vectors, unigrams, cooccurrences, cipher and cosine(a, b) over Spark's Thrift\n"
             "  JDBC/ODBC server (HiveServer2 protocol, no authentication) until Ctrl-C;\n"
             "  restart it after a new build to serve the new run",
    "evaluate": "examples:\n  bitcipher evaluate --lake ./lake\n"
                "  bitcipher evaluate --word2vec vectors.txt --restrict 30000\n"
                "data sets: WS353, SimLex-999, Google analogies (gensim's test data); MEN, RW and\n"
                "more when hyperhyper is installed",
    "probe": "examples:\n"
             "  python benchmarks/brown_conll.py --out data/brown-pos\n"
             "  bitcipher probe --train data/brown-pos/train.conll --test data/brown-pos/test.conll"
             " --lake ./lake\n"
             "  bitcipher probe --train train.conll --test test.conll --vectors vectors.txt\n"
             "files: one 'token tag' per line (more columns: first = token, last = tag), a blank\n"
             "  line between sentences, -DOCSTART- lines skipped. Features: vectors of the\n"
             "  previous, current and next word, standardised (zeros at edges and for unknown\n"
             "  words); model: softmax regression with L2, L-BFGS from zero weights\n"
             "  (float32 features; at most --max-iter iterations, fewer once an iteration\n"
             "  improves the objective by less than 1e-4: the same rule for every model).\n"
             "  Baseline: each word's most frequent train tag (unknown: the most frequent tag).",
    "export": "examples:\n  bitcipher export --format word2vec vectors.txt --lake ./lake\n"
              "  bitcipher export --format npy vectors.npy --lake ./lake\n"
              "  bitcipher export --format torch emb.pt --vocab vocab.txt --lake ./lake\n"
              "torch: row i = token i of --vocab (a missing word gets the <unk> row, see\n"
              "  pipeline/lm.py); needs PyTorch: pip install '.[lm]'",
    "refresh": "examples:\n  bitcipher refresh --corpus s3a://bucket/corpus --lake s3a://bucket/lake\n"
               "  bitcipher refresh --frozen --max-drift 0.05 --corpus s3a://bucket/corpus "
               "--lake s3a://bucket/lake\n"
               "  (frozen nightly, exact weekly: docs/refresh.md)\n"
               "exit codes: 0 refreshed, 5 nothing to do, 2 bad option, 3 bad input,\n"
               "  4 unusable lake, 6 a concurrent refresh won (run again), 1 other failure",
    "history": "example:\n  bitcipher history --lake ./lake",
    "vacuum": "example:\n  bitcipher vacuum --retain-hours 720 --lake ./lake\n"
              "--as-of reaches back only as far as the history VACUUM keeps",
}


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter,
                    argparse.RawDescriptionHelpFormatter):
    """Defaults shown for every optional flag that has one; examples kept as written."""

    def _get_help_string(self, action):
        # a --no-X flag stores False into a default of True: "(default: True)" would read as
        # if the flag were on by default
        if action.required or action.default is None or \
                isinstance(action, argparse._StoreFalseAction):
            return action.help
        return super()._get_help_string(action)


_Formatter = HelpFormatter


def add_master(p: argparse.ArgumentParser) -> None:
    p.add_argument("--master", default=None,
                   help="Spark master URL (default: $BITCIPHER_MASTER or local[*])")


def guarded(run: Callable[[Optional[Sequence[str]]], int], prog: str,
            argv: Optional[Sequence[str]] = None) -> int:
    """Run a command; a BitCipherError becomes one line on stderr and its exit code."""
    try:
        return run(argv)
    except BitCipherError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code


def _bits(value: str):
    return value if value == "auto" else int(value)


def _project(value: str):
    return None if value.lower() in ("none", "0") else int(value)


OPTION_FLAGS = {
    "bits": (("--bits",), dict(type=_bits, default=DEFAULTS.bits, help="cipher bits, or 'auto'")),
    "window": (("--window",), dict(type=int, default=DEFAULTS.window, help="context window m")),
    "mode": (("--mode",), dict(choices=MODES, default=DEFAULTS.mode,
                               help="sum the offset blocks (dim b+1) or concatenate them")),
    "weighting": (("--weighting",), dict(
        choices=WEIGHTINGS, default=DEFAULTS.weighting,
        help="context weight: 1, 1/|d|, or (cos(2pi|d|f_c/M)+1)/2")),
    "smoothing": (("--smoothing",), dict(choices=SMOOTHINGS, default=DEFAULTS.smoothing,
                                         help="beta_t: 1/n(f_t), f_t/(f_t+1), or 1")),
    "transform": (("--transform",), dict(
        choices=TRANSFORMS, default=DEFAULTS.transform,
        help="post-processing of each block F: neglog = -log10 of F normalised to sum 1 "
             "(zeros -> epsilon first); log1p = log(1+F); none = raw F; pmi = log P(bit | "
             "word, offset) - log P(bit | offset), F normalised against the normalised sum "
             "of every word's block (zeros -> epsilon first); ppmi = max(pmi, 0), zeros "
             "kept")),
    "epsilon": (("--epsilon",), dict(type=float, default=DEFAULTS.epsilon,
                                     help="replaces zeros before the neglog and pmi "
                                          "normalisation (unused by log1p, none, ppmi)")),
    "min_count": (("--min-count",), dict(type=int, default=DEFAULTS.min_count,
                                         help="rarer tokens become <unk>")),
    "max_vocab": (("--max-vocab",), dict(type=int, default=DEFAULTS.max_vocab,
                                         help="keep only this many most frequent words")),
    "no_self": (("--no-self",), dict(action="store_true",
                                     help="leave out offset 0 (the word itself)")),
    "keep_case": (("--keep-case",), dict(action="store_true", help="do not lowercase")),
    "max_document_tokens": (("--max-document-tokens",), dict(
        type=int, default=DEFAULTS.max_document_tokens,
        help="longer lines are split into documents of this many tokens")),
    "format": (("--format",), dict(dest="input_format", default=DEFAULTS.input_format,
                                   choices=("auto", "text", "jsonl", "parquet"),
                                   help="shard format; auto decides by file extension")),
    "text_field": (("--text-field",), dict(default=DEFAULTS.text_field,
                                           help="JSON field / Parquet column holding the text")),
    "project": (("--project",), dict(
        type=_project, default=DEFAULTS.project, metavar="K|none",
        help="project the vectors onto their top K principal directions (K dimensions); "
             "'none' keeps the b+1 (sum) or (b+1)(2m+1) (concat) dimensions of the paper")),
    "project_exponent": (("--project-exponent",), dict(
        type=float, default=DEFAULTS.project_exponent, metavar="P",
        help="singular-value exponent of the projection: vectors U_k S_k^P")),
    "project_center": (("--project-center",), dict(
        action="store_true", help="subtract the mean vector before projecting (PCA)")),
}
"""The build options as command-line flags, shared by `bitcipher` and the jobs."""


def add_options(p: argparse.ArgumentParser, *names: str) -> None:
    """Add the named build options (keys of OPTION_FLAGS) to a parser."""
    for name in names:
        flags, kwargs = OPTION_FLAGS[name]
        p.add_argument(*flags, **kwargs)


def _add_lake(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lake", default=DEFAULT_LAKE, help="lake directory or URI ($BITCIPHER_LAKE)")
    add_master(p)


def _add_as_of(p: argparse.ArgumentParser) -> None:
    p.add_argument("--as-of", default=None, metavar="VERSION|TIMESTAMP",
                   help="read the lake as it was at this vectors version or ISO timestamp "
                        "(Delta time travel; `bitcipher history` lists the versions)")


def _add_corpus_and_options(p: argparse.ArgumentParser, keep_runs_help: str) -> None:
    """What `build` and `refresh` both take: the corpus, the lake, every build option."""
    p.add_argument("--corpus", nargs="+", required=True,
                   help="shard directory, glob or file (several allowed)")
    _add_lake(p)
    add_options(p, "bits", "window", "mode", "weighting", "smoothing", "transform", "epsilon",
                "min_count", "max_vocab", "no_self", "keep_case", "max_document_tokens",
                "format", "text_field", "project", "project_exponent", "project_center")
    p.add_argument("--keep-runs", type=int, default=1, help=keep_runs_help)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="bitcipher",
        description="Word vectors from sharded corpora on Spark and Delta Lake, without "
                    "backpropagation (bit-cipher).",
        formatter_class=_Formatter,
    )
    top.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    b = sub.add_parser("build", help="build vectors from a corpus into a lake",
                       formatter_class=_Formatter, epilog=EXAMPLES["build"],
                       description="tokenize -> count (every shard into the lake's count store, "
                                   "for refresh) -> unigrams -> cipher -> cooccurrences + "
                                   "vectors (one pass over the documents) -> projection "
                                   "(--project) -> "
                                   "publish the vectors "
                                   "table; one line per stage with rows and seconds (the "
                                   "'vectors' line includes publishing).")
    _add_corpus_and_options(b, keep_runs_help="earlier builds whose Parquet tables are kept")
    b.add_argument("--cipher-from", metavar="VERSION", default=None,
                   help="keep the cipher epoch (vocabulary, codes, projection) of the run that "
                        "this version (or timestamp) of the vectors table published, as "
                        "`refresh --frozen` does; the options must be that run's")
    b.add_argument("--no-count-store", dest="count_store", action="store_false",
                   help="a one-off build, about a third faster: do not count the shards into "
                        "the lake's count store and totals (lake/counts, lake/totals), so the "
                        "first `refresh` of the lake counts every shard")

    q = sub.add_parser("sql", help="run Spark SQL on the lake's tables",
                       formatter_class=_Formatter, epilog=EXAMPLES["sql"])
    q.add_argument("query")
    q.add_argument("--limit", type=int, default=50, help="rows shown")
    _add_as_of(q)
    _add_lake(q)

    n = sub.add_parser("neighbors", help="cosine nearest neighbours of a word",
                       formatter_class=_Formatter, epilog=EXAMPLES["neighbors"])
    n.add_argument("word")
    n.add_argument("-k", type=int, default=10, help="how many")
    _add_as_of(n)
    n.add_argument("--engine", choices=("auto", "fast", "spark"), default="auto",
                   help="read the vectors with delta-rs (fast, no JVM) or Spark")
    _add_lake(n)

    s = sub.add_parser("serve", help="serve the lake's tables over JDBC/ODBC (Spark Thrift "
                                     "server)",
                       formatter_class=_Formatter, epilog=EXAMPLES["serve"])
    s.add_argument("--port", type=int, default=10000, help="TCP port")
    s.add_argument("--host", default="127.0.0.1",
                   help="address to bind (0.0.0.0: every interface)")
    _add_lake(s)

    v = sub.add_parser("evaluate", help="word similarity (Spearman) and analogy accuracy",
                       formatter_class=_Formatter, epilog=EXAMPLES["evaluate"])
    v.add_argument("--word2vec", default=None,
                   help="score a word2vec text file instead of the lake's vectors")
    v.add_argument("--restrict", type=int, default=30000,
                   help="analogy candidates: this many most frequent words")
    _add_lake(v)

    pr = sub.add_parser("probe", help="token-tagging probe (POS, NER) on CoNLL files",
                        formatter_class=_Formatter, epilog=EXAMPLES["probe"],
                        description="Train a tagger on the vectors of the previous, current "
                                    "and next word; print accuracy and macro-F1 beside the "
                                    "most-frequent-tag-per-word baseline on the same test file.")
    pr.add_argument("--train", required=True, help="CoNLL file to train on")
    pr.add_argument("--test", required=True, help="CoNLL file to score")
    pr.add_argument("--vectors", default=None,
                    help="probe a word2vec text file instead of the lake's vectors")
    pr.add_argument("--case", choices=("auto", "lower", "keep"), default="auto",
                    help="word lookup: lowercased, as written, or auto (the lake's build "
                         "option; for a file, lower when no word has an upper-case letter)")
    pr.add_argument("--l2", type=float, default=1e-5, help="L2 penalty on the weights")
    pr.add_argument("--max-iter", type=int, default=100,
                    help="L-BFGS iterations at most (it stops earlier once an iteration "
                         "improves the objective by less than 1e-4)")
    pr.add_argument("--max-train-tokens", type=int, default=200_000,
                    help="train on a random subset of this many train tokens (0: all)")
    pr.add_argument("--seed", type=int, default=0, help="seed of that subset")
    pr.add_argument("--json", action="store_true", help="print the result as one JSON object")
    _add_lake(pr)

    e = sub.add_parser("export", help="export vectors (word2vec text, NumPy or PyTorch)",
                       formatter_class=_Formatter, epilog=EXAMPLES["export"])
    e.add_argument("out")
    e.add_argument("--format", choices=("word2vec", "npy", "torch"), default="word2vec")
    e.add_argument("--vocab", default=None,
                   help="torch: tokenizer vocabulary file (one token per line, or JSON list / "
                        "token->index dict); rows follow it (default: the lake's words)")
    e.add_argument("--fallback", choices=("unk", "zeros", "mean"), default="unk",
                   help="torch: row of a token the lake lacks")
    e.add_argument("--standardize", action="store_true",
                   help="torch: standardise each dimension with the lake's mean and std")
    _add_lake(e)
    _add_as_of(e)

    r = sub.add_parser("refresh", help="bring a lake up to date with its corpus (incremental)",
                       formatter_class=_Formatter, epilog=EXAMPLES["refresh"],
                       description="Counts only new or changed shards, takes out removed ones, "
                                   "then republishes the tables exactly as a full build of the "
                                   "current shards would; one line per stage.")
    _add_corpus_and_options(
        r, keep_runs_help="earlier runs whose Parquet tables are kept (for --as-of)")
    r.add_argument("--frozen", action="store_true",
                   help="keep the published cipher epoch (vocabulary, codes, projection): new "
                        "words stay <unk> until the next exact refresh; exact when the lake "
                        "has no epoch or the options differ from its (docs/refresh.md)")
    r.add_argument("--max-drift", type=float, default=None, metavar="X",
                   help="with --frozen: refresh exactly (a new epoch) when the drift passes X "
                        "(share of the tokens whose word's code would change tier, one-hot "
                        "to two-hot or out of the vocabulary, or that are <unk> but would "
                        "have a vector of their own)")

    h = sub.add_parser("history", help="list the builds and refreshes of a lake",
                       formatter_class=_Formatter, epilog=EXAMPLES["history"])
    h.add_argument("--json", action="store_true", help="one JSON object per line")
    h.add_argument("--lake", default=DEFAULT_LAKE, help="lake directory or URI ($BITCIPHER_LAKE)")

    w = sub.add_parser("vacuum", help="delete table files older than the retention period",
                       formatter_class=_Formatter, epilog=EXAMPLES["vacuum"])
    w.add_argument("--retain-hours", type=float, default=168.0,
                   help="history kept for time travel")
    _add_lake(w)
    return top


def build_options_from_args(args) -> BuildOptions:
    """The BuildOptions of parsed `build` / `refresh` arguments (validated: a bad value
    raises OptionError before anything starts)."""
    return BuildOptions(
        bits=args.bits, window=args.window, mode=args.mode, weighting=args.weighting,
        smoothing=args.smoothing, transform=args.transform, epsilon=args.epsilon,
        min_count=args.min_count, max_vocab=args.max_vocab, include_self=not args.no_self,
        lowercase=not args.keep_case, max_document_tokens=args.max_document_tokens,
        input_format=args.input_format, text_field=args.text_field, project=args.project,
        project_exponent=args.project_exponent,
        project_center=args.project_center,
    )


def _session(args):
    from bitcipher.runtime.session import spark_session

    started = time.perf_counter()
    spark = spark_session(master=args.master,  # s3a:// corpus or lake: hadoop-aws + settings
                          storage=[getattr(args, "corpus", None), getattr(args, "lake", None)])
    print(f"{'spark session':<14}{'':>14}       {time.perf_counter() - started:>7.2f} s",
          file=sys.stderr, flush=True)
    return spark


def _print_table(columns: list[str], rows: list[tuple]) -> None:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.6g}"
        if isinstance(v, (list, tuple)):
            inner = ", ".join(fmt(x) for x in v[:4])
            return f"[{inner}{', ...' if len(v) > 4 else ''}] ({len(v)})"
        return str(v)

    cells = [[fmt(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for r in cells:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)))


def fast_engine(args) -> bool:
    """neighbors --engine: auto is fast (no JVM) for a lake on a local file system when
    deltalake is installed and no master is given; object storage stays with Spark (its
    s3a settings), unless --engine fast asks otherwise."""
    from bitcipher.query.fast_read import use_fast_engine

    return use_fast_engine(args.lake, args.engine, master=args.master)


def _local_path(uri: str) -> Optional[str]:
    """The local file-system path of a corpus or lake argument; None for object storage
    and other remote schemes (s3a://, hdfs://, gs://: not checked before Spark starts)."""
    if uri.startswith("file://"):
        return uri[len("file://"):]
    return None if "://" in uri else uri


def check_before_spark(args) -> None:
    """What `build` and `refresh` can tell wrong before the JVM starts (seconds, not a
    minute): every local corpus path must exist and hold files, --keep-runs must not be
    negative, and a local lake must be a directory this package can write (not a file,
    not a lake of another format version).

    Raises
    ------
    OptionError
        A bad option (exit 2).
    bitcipher.errors.InputError
        A local corpus path that does not exist or holds no files (exit 3).
    LakeError
        A local lake that is a file, a bare Delta table or of another format version
        (exit 4).
    """
    from bitcipher.errors import LakeError

    if args.keep_runs < 0:
        raise OptionError(f"--keep-runs must be >= 0; got {args.keep_runs}")
    local = [c for c in args.corpus if _local_path(c) is not None]
    if local:
        from bitcipher.stages.corpus import list_shards

        for spec in local:  # the build's own listing: the same messages, no JVM
            list_shards(spec, args.input_format)
    lake_path = _local_path(args.lake)
    if lake_path is not None:
        if os.path.exists(lake_path) and not os.path.isdir(lake_path):
            raise LakeError(f"--lake {args.lake!r} is a file, not a lake directory")
        from bitcipher.lake.tables import Lake as _Lake, check_lake

        check_lake(_Lake(args.lake))


def run(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "build":
        options = build_options_from_args(args)  # bad options fail before Spark starts
        check_before_spark(args)  # so do missing corpus paths and unusable lakes
        from bitcipher.builder import build

        started = time.perf_counter()
        spark = _session(args)
        result = build(spark, args.corpus, args.lake, options, keep_runs=args.keep_runs,
                       cipher_from=args.cipher_from, count_store=args.count_store)
        print(f"built {result.vocab_size:,} vectors of dimension {result.dim} (bits {result.bits}) "
              f"from {result.tokens:,} tokens in {result.shards} shards into {result.lake} "
              f"(run {result.run}) in {time.perf_counter() - started:.1f} s")
        return 0
    if args.command == "refresh":
        options = build_options_from_args(args)
        from bitcipher.errors import EXIT_NOTHING_TO_DO
        from bitcipher.incremental.run import check_refresh_mode, refresh

        check_refresh_mode(args.frozen, args.max_drift)
        check_before_spark(args)
        started = time.perf_counter()
        result = refresh(_session(args), args.corpus, args.lake, options,
                         keep_runs=args.keep_runs, frozen=args.frozen,
                         max_drift=args.max_drift)
        if result.nothing_to_do:
            print(f"nothing to do: {args.lake} is up to date (refresh {result.seq})")
            return EXIT_NOTHING_TO_DO
        b = result.build
        mode = f"frozen to run {b.frozen_to}" if b.frozen_to else "exact"
        print(f"refreshed {args.lake} ({mode}): +{len(result.added)} ~{len(result.replaced)} "
              f"-{len(result.removed)} shards; {b.vocab_size:,} vectors of dimension {b.dim} from "
              f"{b.tokens:,} tokens in {b.shards} shards (run {b.run}, refresh {result.seq}) in "
              f"{time.perf_counter() - started:.1f} s")
        return 0
    if args.command == "history":
        import json as _json

        from bitcipher.lake.history import HISTORY_COLUMNS, format_history, lake_history
        from bitcipher.lake.tables import Lake as _Lake

        entries = lake_history(_Lake(args.lake))
        if args.json:
            for entry in entries:
                print(_json.dumps(entry, sort_keys=True))
        else:
            _print_table(HISTORY_COLUMNS, format_history(entries, DEFAULTS.recorded()))
        return 0
    if args.command == "vacuum":
        from bitcipher.incremental.run import vacuum

        vacuum(_session(args), args.lake, args.retain_hours)
        return 0
    from bitcipher.query.keyed_vectors import KeyedVectors, export, register_cosine
    from bitcipher.lake.tables import Lake, read_table, register_tables

    lake = Lake(args.lake)
    if args.command == "sql":
        spark = _session(args)
        if args.as_of is not None:
            from bitcipher.lake.history import register_tables_as_of

            register_tables_as_of(spark, lake, args.as_of)
        else:
            register_tables(spark, lake)
        register_cosine(spark)
        df = spark.sql(args.query)
        rows = [tuple(r) for r in df.limit(args.limit).collect()]
        _print_table(df.columns, rows)
        return 0
    if args.command == "serve":
        from bitcipher.query.sql_server import serve

        return serve(lake, host=args.host, port=args.port, master=args.master)
    if args.command == "neighbors" and fast_engine(args):
        from bitcipher.query.fast_read import keyed_vectors

        version = None
        if args.as_of is not None:  # Delta time travel with delta-rs: still no JVM
            from bitcipher.lake.history import resolve_version

            version = resolve_version(lake, args.as_of)
        _print_table(["word", "cosine"],
                     keyed_vectors(lake, version).most_similar(args.word, args.k))
        return 0
    if args.command == "evaluate":
        from bitcipher.evaluation.evaluate import evaluate_all, format_report, load_word2vec

        if args.word2vec:
            kv = load_word2vec(args.word2vec, counts="ranks")
        else:
            kv = KeyedVectors.from_frame(read_table(_session(args), lake, "vectors"))
        print(format_report(evaluate_all(kv, restrict=args.restrict)))
        return 0
    if args.command == "probe":
        from bitcipher.evaluation.probe import run_probe_cli

        return run_probe_cli(args, lambda: KeyedVectors.from_frame(
            read_table(_session(args), lake, "vectors")), lake)
    spark = _session(args)
    as_of = getattr(args, "as_of", None)
    if as_of is not None:
        from bitcipher.lake.history import resolve_version

        as_of = resolve_version(lake, as_of)
    kv = KeyedVectors.from_frame(read_table(spark, lake, "vectors", as_of=as_of))
    if args.command == "neighbors":
        _print_table(["word", "cosine"], kv.most_similar(args.word, args.k))
        return 0
    if args.command == "export" and args.format == "torch":
        from bitcipher.evaluation.lm import export_torch, lake_lowercase

        for path in export_torch(kv, args.out, args.vocab, lowercase=lake_lowercase(lake),
                                 fallback=args.fallback, standardize=args.standardize):
            print(f"wrote {path}")
        return 0
    if args.command == "export":
        for path in export(kv, args.format, args.out):
            print(f"wrote {path}")
        return 0
    return 2


def main(argv: Optional[Sequence[str]] = None) -> int:
    return guarded(run, "bitcipher", argv)


if __name__ == "__main__":
    sys.exit(main())
