"""Job build: the whole build (tokenize -> unigrams -> cooccurrences -> cipher -> vectors) into
a lake, published atomically; the same flags as `bitcipher build`.

    spark-submit --packages io.delta:delta-spark_4.1_2.13:4.4.0 jobs/build.py \\
        --corpus data/kjv --lake ./lake
"""

import argparse
import sys
from typing import Optional, Sequence

from bitcipher import cli

EXAMPLE = ("example:\n  spark-submit --packages io.delta:delta-spark_4.1_2.13:4.4.0 "
           "jobs/build.py --corpus data/kjv --lake ./lake --bits 32 --window 5")


def parser() -> argparse.ArgumentParser:
    """`bitcipher build`'s own parser, under this job's name and example."""
    commands = next(a for a in cli.parser()._actions
                    if isinstance(a, argparse._SubParsersAction))
    build = commands.choices["build"]
    build.prog = "jobs/build.py"
    build.epilog = EXAMPLE
    return build


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser().parse_args(argv)  # usage errors and --help under this job's name
    return cli.main(["build", *argv])


if __name__ == "__main__":
    sys.exit(main())
