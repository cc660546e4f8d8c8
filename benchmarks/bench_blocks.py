#!/usr/bin/env python3
"""The wide-block step of a vector task, with NumPy's huge-page advice on and off.

Takes a lake made by ``bitcipher refresh`` (it needs the totals snapshot and a published
epoch), reads bucket 0 of the co-occurrence totals, maps it to the epoch's ids as a refresh
does, and in a fresh Python process per setting times ``raw_blocks`` + ``post`` (the ppmi
finish) of that bucket's words --repeat times: what a Python worker does for each task of
the cooccurrences stage. Each process sets ``NUMPY_MADVISE_HUGEPAGE`` before NumPy loads:
``1`` is NumPy's default on Linux (large arrays advised as transparent huge pages), ``0``
is what ``bitcipher`` sets for its driver and workers.

examples:
  bitcipher refresh --corpus data/mix --lake /tmp/mix-lake
  python benchmarks/bench_blocks.py --lake /tmp/mix-lake
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child(lake_root: str, repeat: int) -> dict:
    import time

    import numpy as np
    import pyarrow.parquet as pq

    from bitcipher.incremental import totals
    from bitcipher.incremental.run import pc_index_in
    from bitcipher.keys import PACKED_EDGE, KeyCodec, sum_by_key, unpack
    from bitcipher.lake.tables import PROP_OPTIONS, Lake, published
    from bitcipher.options import BuildOptions
    from bitcipher.stages.epoch import frozen_vocabulary, published_epoch
    from bitcipher.stages.vectors import post, raw_blocks

    lake = Lake(lake_root)
    snap = totals.read_pointer(lake)
    epoch = published_epoch(lake)
    if snap is None or epoch is None:
        raise SystemExit(f"{lake_root}: no totals snapshot or no epoch (make it with "
                         f"`bitcipher refresh`)")
    options = BuildOptions.from_json(published(lake).properties[PROP_OPTIONS])
    words, _, wcounts = totals.read_words(lake, snap)
    vocab = frozen_vocabulary(epoch, words, wcounts, int(wcounts.sum()))
    id_of_idx = pc_index_in(words, vocab.words)
    id_of_idx[id_of_idx < 0] = vocab.unk_id
    codec = KeyCodec(len(vocab), options.window)
    t = pq.read_table(f"{totals.snapshot_dir(lake, snap.name)}/pairs/part-00000.parquet")
    center_idx, off, ctx = unpack(t.column("key").to_numpy().astype(np.int64))
    keep = (np.abs(off) <= options.window) & (off != 0)
    center = id_of_idx[center_idx[keep]]
    edge = ctx[keep] == PACKED_EDGE
    context = np.where(edge, codec.edge_context, id_of_idx[np.where(edge, 0, ctx[keep])])
    ck, cn = sum_by_key(codec.encode(center, off[keep], context),
                        t.column("count").to_numpy().astype(np.int64)[keep])
    named = codec.center_of(ck) != vocab.unk_id
    ck, cn = ck[named], cn[named]
    c, o, x_ctx = codec.decode(ck)
    args = (c.astype(np.int32), codec.table_context(x_ctx).astype(np.int32), o.astype(np.int8),
            cn, epoch.cipher.context(), np.append(vocab.counts, 0), vocab.total, options)
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        ids, f = raw_blocks(*args)
        post(f, options.transform, options.epsilon, epoch.marginal)
        seconds.append(time.perf_counter() - started)
        f_dim = f.shape[-1] * f.shape[-2]
        del f
    return {"words": int(len(ids)), "dim": int(f_dim), "seconds": seconds}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--lake", required=True, help="a lake made by `bitcipher refresh`")
    p.add_argument("--repeat", type=int, default=6, help="calls per process (default 6)")
    p.add_argument("--rounds", type=int, default=2, help="processes per setting (default 2)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.lake, args.repeat)))
        return 0
    print(f"raw_blocks + ppmi post of bucket 0 of {args.lake}, {args.repeat} calls per process")
    for _ in range(args.rounds):
        for advice in ("1", "0"):
            env = {**os.environ, "NUMPY_MADVISE_HUGEPAGE": advice}
            out = subprocess.run([sys.executable, __file__, "--child", "--lake", args.lake,
                                  "--repeat", str(args.repeat)], env=env, check=True,
                                 capture_output=True, text=True, cwd=ROOT).stdout
            r = json.loads(out.strip().splitlines()[-1])
            s = r["seconds"]
            print(f"NUMPY_MADVISE_HUGEPAGE={advice}  {r['words']:,} words x {r['dim']}: "
                  + " ".join(f"{x:.2f}" for x in s) + f"  total {sum(s):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
