"""`--keep-runs N`: a build keeps the Parquet folders of the N runs published before it."""

from conftest import CORPUS_A, CORPUS_B, write_shards

from bitcipher import BuildOptions, build
from bitcipher.lake.history import lake_history, published_runs
from bitcipher.lake.tables import Lake

OPTIONS = BuildOptions(bits=6, window=1, min_count=1)


def test_keep_runs_keeps_the_latest_earlier_runs(spark, tmp_path):
    corpus = write_shards(tmp_path / "corpus", CORPUS_A[:3] + CORPUS_B[:2], shards=1)
    lake = Lake(str(tmp_path / "lake"))

    def folders():
        return sorted(p.name for p in (tmp_path / "lake" / "runs").iterdir())

    def build_keeping(n):
        return build(spark, str(corpus), lake, OPTIONS, report=lambda _: None,
                     keep_runs=n).run

    runs = [build_keeping(2) for _ in range(3)]
    assert len(set(runs)) == 3
    assert folders() == sorted(runs)  # the two earlier runs are kept, not only the last one
    assert published_runs(lake) == runs == [e["run"] for e in lake_history(lake)]

    runs.append(build_keeping(2))
    assert folders() == sorted(runs[1:])  # the oldest one goes

    runs.append(build_keeping(0))
    assert folders() == [runs[-1]]
    assert published_runs(lake) == runs  # the history still names every run
