"""Every build option, its default and its meaning, in one place."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Optional, Union

from bitcipher.errors import OptionError

MODES = ("sum", "concat")
WEIGHTINGS = ("flat", "harmonic", "cosine")
SMOOTHINGS = ("nf", "f", "none")
TRANSFORMS = ("neglog", "log1p", "none", "pmi", "ppmi")
FORMATS = ("text", "jsonl", "parquet", "auto")
MAX_BITS = 16_384
MAX_WINDOW = 50


@dataclass(frozen=True)
class BuildOptions:
    """Options of one build (ALGORITHM.md); recorded with the vectors table.

    The defaults (bits 4096, window 5, transform ppmi, sum, harmonic, nf, with self, projected
    onto 300 dimensions with exponent 0.5) were chosen by a sweep on development data
    (docs/quality.md). The paper's settings are ``bits=32, window=5, transform="neglog",
    project=None`` with the other defaults (:data:`PAPER`).

    Parameters
    ----------
    bits : int or "auto"
        Cipher dimension b; vectors have D = b + 1 dimensions per block. "auto" picks the
        smallest b whose 2**b - 1 codes cover the vocabulary.
    window : int
        Context window m; offsets d run over [-m, m].
    mode : {"sum", "concat"}
        Sum the per-offset blocks (dimension D) or concatenate them (D * (2m + 1)).
    weighting : {"flat", "harmonic", "cosine"}
        Weight w(d, c) of a context: 1; 1/|d| (1 at d = 0); (cos(2 pi |d| f_c / M) + 1) / 2.
    smoothing : {"nf", "f", "none"}
        Mixing weight beta_t of a word's code against the unigram bit mass:
        1 / n(f_t); f_t / (f_t + 1); 1.
    transform : {"neglog", "log1p", "none", "pmi", "ppmi"}
        Post-processing of each block: -log10 of the normalised block (zeros -> epsilon);
        natural log(1 + F); raw F; "pmi": log P(bit | word, offset) - log P(bit | offset),
        the normalised block against the normalised sum of every word's block (zeros ->
        epsilon); "ppmi": max(pmi, 0), zeros kept.
    epsilon : float
        Value that replaces zeros before "neglog" and "pmi" normalisation.
    min_count : int
        Tokens seen fewer times become "<unk>".
    max_vocab : int or None
        Keep only this many most frequent words (besides "<unk>").
    include_self : bool
        Count the word itself as its context at offset 0.
    lowercase : bool
        Lowercase text before tokenizing.
    max_document_tokens : int
        Longer documents are split into chunks of this many tokens.
    input_format : {"auto", "text", "jsonl", "parquet"}
        Shard format; "auto" decides by file extension (.jsonl/.json, .parquet, else text).
    text_field : str
        Field (JSON Lines) or column (Parquet) that holds a document's text.
    project : int or None
        Project every vector onto its top-k principal directions (k dimensions); None keeps
        the D-dimensional vectors (the paper).
    project_exponent : float
        Singular-value exponent p of the projection: vectors become U_k Σ_k^p.
    project_center : bool
        Subtract the mean vector before the projection (PCA) instead of a plain SVD.
    """

    bits: Union[int, str] = 4096
    window: int = 5
    mode: str = "sum"
    weighting: str = "harmonic"
    smoothing: str = "nf"
    transform: str = "ppmi"
    epsilon: float = 0.001
    min_count: int = 5
    max_vocab: Optional[int] = None
    include_self: bool = True
    lowercase: bool = True
    max_document_tokens: int = 10_000
    input_format: str = "auto"
    text_field: str = "text"
    project: Optional[int] = 300
    project_exponent: float = 0.5
    project_center: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        def choice(name: str, allowed: tuple) -> None:
            value = getattr(self, name)
            if value not in allowed:
                raise OptionError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")

        def int_range(name: str, low: int, high: Optional[int]) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise OptionError(f"{name} must be an integer; got {value!r}")
            if value < low or (high is not None and value > high):
                bound = f"between {low} and {high}" if high is not None else f">= {low}"
                raise OptionError(f"{name} must be {bound}; got {value}")

        if self.bits != "auto":
            int_range("bits", 2, MAX_BITS)
        int_range("window", 1, MAX_WINDOW)
        choice("mode", MODES)
        choice("weighting", WEIGHTINGS)
        choice("smoothing", SMOOTHINGS)
        choice("transform", TRANSFORMS)
        choice("input_format", FORMATS)
        if not isinstance(self.epsilon, (int, float)) or not 0 < self.epsilon < 1:
            raise OptionError(f"epsilon must be in (0, 1); got {self.epsilon!r}")
        int_range("min_count", 1, None)
        if self.max_vocab is not None:
            int_range("max_vocab", 1, None)
        int_range("max_document_tokens", 2, None)
        if self.project is not None:
            int_range("project", 1, None)
        if (isinstance(self.project_exponent, bool)
                or not isinstance(self.project_exponent, (int, float))
                or not -2 <= self.project_exponent <= 2):
            raise OptionError(f"project_exponent must be in [-2, 2]; got {self.project_exponent!r}")
        if not isinstance(self.project_center, bool):
            raise OptionError(f"project_center must be true or false; got {self.project_center!r}")
        if not self.text_field:
            raise OptionError("text_field must be a non-empty field name")

    @property
    def offsets(self) -> list[int]:
        """Offsets d that take part, in increasing order."""
        m = self.window
        return [d for d in range(-m, m + 1) if d != 0 or self.include_self]

    def recorded(self) -> dict:
        """The options that define the vectors, as recorded with the table."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.recorded(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "BuildOptions":
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


DEFAULTS = BuildOptions()
PAPER = BuildOptions(bits=32, window=5, transform="neglog", project=None)
