"""Job vectors: the `cooccurrences` and `cipher` tables -> a contextual vector per word, the
`vectors` table (Delta).

    spark-submit --packages io.delta:delta-spark_4.1_2.13:4.4.0 jobs/vectors.py \\
        --cooccurrences /tmp/stages/cooccurrences --cipher /tmp/stages/cipher \\
        --out /tmp/stages/vectors
"""

import argparse
import json
import sys
from typing import Optional, Sequence

import numpy as np

from bitcipher.builder import TOKENS_PER_PARTITION, cooccurrence_partitions
from bitcipher.stages.cipher import Cipher, cipher_from_table
from bitcipher.errors import InputError, LakeError, OptionError
from bitcipher.options import DEFAULTS, BuildOptions
from bitcipher.lake.schemas import check_schema, conform, schema_of
from bitcipher.cli import HelpFormatter as _Formatter
from bitcipher.cli import add_master, add_options, guarded
from bitcipher.runtime.session import spark_session
from bitcipher.stages.vectors import (contextual_vectors, cooccurrence_marginal, empty_vector,
                              needs_marginal)

EXAMPLE = ("example:\n  spark-submit --packages io.delta:delta-spark_4.1_2.13:4.4.0 "
           "jobs/vectors.py --cooccurrences /tmp/stages/cooccurrences "
           "--cipher /tmp/stages/cipher --out /tmp/stages/vectors --mode sum")
VECTOR_OPTIONS = ("bits", "window", "mode", "weighting", "transform", "epsilon", "include_self")
"""The options that shape the vectors from given cooccurrences and cipher tables."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="jobs/vectors.py", formatter_class=_Formatter, epilog=EXAMPLE,
        description="Stage vectors: aggregate the cipher vectors of each word's contexts\n"
                    "and write the vectors table (word, id, count, vector) as Delta (overwrite).")
    p.add_argument("--cooccurrences", required=True,
                   help="cooccurrences table (jobs/cooccurrences.py)")
    p.add_argument("--cipher", required=True, help="cipher table (jobs/cipher.py)")
    p.add_argument("--out", required=True, help="output Delta table folder or URI")
    p.add_argument("--window", type=int, default=None,
                   help="context window m (default: the one the cooccurrences were counted "
                        "with; a smaller one uses only the offsets within it)")
    p.add_argument("--partitions", type=int, default=None,
                   help="partitions the cooccurrences are regrouped into by center (default: "
                        "spark.bitcipher.partitions, or the default parallelism, or one per "
                        f"{TOKENS_PER_PARTITION:,} corpus tokens if that is more)")
    add_options(p, "mode", "weighting", "transform", "epsilon", "no_self")
    add_master(p)
    return p


def read_cipher(spark, path: str) -> tuple[list[str], Cipher]:
    """Words and the Cipher of a cipher table, in id order."""

    df = spark.read.parquet(path)
    check_schema(df, "cipher", path)
    table = df.orderBy("id").toArrow().combine_chunks()
    ids = table.column("id").to_numpy()
    if len(ids) == 0 or not np.array_equal(ids, np.arange(len(ids))):
        raise LakeError(f"cipher table {path} does not hold ids 0..{len(ids) - 1}")
    bits = table.column("bits").to_numpy()
    cipher = cipher_from_table(int(bits[0]), table.column("count").to_numpy(),
                               table.column("code").to_pylist(), table.column("beta").to_numpy())
    return table.column("word").to_pylist(), cipher


def offsets_of(cooccurrences, path: str) -> tuple[int, bool]:
    """The window a cooccurrences table was counted with, and whether it holds offset 0.

    Every token has a context (a word or EDGE) at every offset, so both show in the table.
    """
    from pyspark.sql import functions as F

    row = cooccurrences.agg(F.max(F.abs("offset")).alias("window"),
                            F.max((F.col("offset") == 0).cast("int")).alias("self")).first()
    if row is None or row["window"] is None:
        raise InputError(f"cooccurrences table {path} is empty: nothing to aggregate")
    return int(row["window"]), bool(row["self"])


def run(argv: Optional[Sequence[str]] = None) -> int:
    args = parser().parse_args(argv)
    import pyarrow as pa
    from pyspark.sql import functions as F

    if args.partitions is not None and args.partitions < 1:
        raise OptionError(f"partitions must be >= 1; got {args.partitions}")
    BuildOptions(window=DEFAULTS.window if args.window is None else args.window,
                 mode=args.mode, weighting=args.weighting, transform=args.transform,
                 epsilon=args.epsilon)  # bad options fail before Spark starts
    spark = spark_session(master=args.master)
    words, cipher = read_cipher(spark, args.cipher)
    cooc = spark.read.parquet(args.cooccurrences)
    check_schema(cooc, "cooccurrences", args.cooccurrences)
    counted_window, counted_self = offsets_of(cooc, args.cooccurrences)
    window = counted_window if args.window is None else args.window
    if window > counted_window:
        raise OptionError(f"--window {window} needs offsets up to {window}, but "
                          f"{args.cooccurrences} was counted with window {counted_window}")
    if not args.no_self and not counted_self:
        raise OptionError(f"{args.cooccurrences} was counted without offset 0; pass --no-self")
    options = BuildOptions(bits=cipher.bits, window=window, mode=args.mode,
                           weighting=args.weighting, transform=args.transform,
                           epsilon=args.epsilon, include_self=not args.no_self)
    if window < counted_window or (counted_self and not options.include_self):
        cooc = cooc.where(F.col("offset").isin(options.offsets))

    total = int(cipher.counts.sum())
    partitions = args.partitions or cooccurrence_partitions(spark, total)
    # All rows of a centre word in one partition, in the order the build aggregates them:
    # (center, offset, context) with EDGE (-1) after the words, as in the co-occurrence keys
    # (bitcipher.keys.KeyCodec), so the float sums run in the same order and agree bit for bit.
    by_center = cooc.repartition(partitions, "center").sortWithinPartitions(
        "center", "offset", F.col("context") < 0, "context"
    )
    marginal = (cooccurrence_marginal(cooc, cipher.context(), cipher.counts, total,
                                      options) if needs_marginal(options) else None)
    vec = by_center.transform(
        contextual_vectors(spark, cipher.context(), cipher.counts, total, options,
                           marginal)
    )
    vocab = spark.createDataFrame(pa.table({
        "word": pa.array(words, pa.string()),
        "id": pa.array(np.arange(len(words), dtype=np.int32)),
        "count": pa.array(cipher.counts, pa.int64()),
    }))
    vectors = vec.join(F.broadcast(vocab), "id")
    unseen = [(words[i], int(i), 0, empty_vector(cipher.bits, options, marginal))
              for i in np.flatnonzero(cipher.counts == 0)]
    if unseen:  # only <unk> can have count 0: no co-occurrences, a constant vector
        vectors = vectors.unionByName(
            conform(spark.createDataFrame(unseen, schema=schema_of("vectors")), "vectors"))
    vectors = conform(vectors, "vectors").coalesce(max(1, len(words) // 500_000))
    recorded = {k: v for k, v in options.recorded().items() if k in VECTOR_OPTIONS}
    (vectors.sortWithinPartitions("id").write.format("delta").mode("overwrite")
     .option("overwriteSchema", "true")
     .option("userMetadata", json.dumps(recorded, sort_keys=True))  # the commit's options
     .save(args.out))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return guarded(run, "vectors", argv)


if __name__ == "__main__":
    sys.exit(main())
