"""What a user of the Python packaging ecosystem expects: version, entry points, licence,
changelog, dependency ranges with pinned constraints, a cheap import, the public API."""

import re
import subprocess
import sys
import tomllib
from importlib.metadata import version as installed_version
from pathlib import Path

import numpy as np
import pytest
from packaging.requirements import Requirement
from packaging.version import Version

import bitcipher
from bitcipher.cli import main

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]


def constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, pinned = line.partition("==")
            assert pinned, f"constraints.txt pins exact versions: {line!r}"
            pins[name.strip().lower().replace("_", "-")] = pinned.strip()
    return pins


def requirements(extra=None) -> list[Requirement]:
    specs = PROJECT["dependencies"] if extra is None else PROJECT["optional-dependencies"][extra]
    return [Requirement(s) for s in specs]


# --------------------------------------------------------------------------- version


def test_version_is_the_installed_metadata_and_pyproject():
    assert bitcipher.__version__ == installed_version("bit-cipher") == PROJECT["version"]
    assert bitcipher._SOURCE_VERSION == PROJECT["version"]
    Version(bitcipher.__version__)  # a PEP 440 version


def test_version_falls_back_to_the_source_version(monkeypatch):
    import importlib.metadata

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    assert bitcipher._version() == PROJECT["version"]


def test_cli_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"bitcipher {bitcipher.__version__}"


def test_python_dash_m_bitcipher():
    out = subprocess.run([sys.executable, "-m", "bitcipher", "--version"], capture_output=True,
                         text=True, check=True, timeout=120).stdout
    assert out.strip() == f"bitcipher {bitcipher.__version__}"
    help_text = subprocess.run([sys.executable, "-m", "bitcipher", "--help"],
                               capture_output=True, text=True, check=True, timeout=120).stdout
    assert "build" in help_text and "neighbors" in help_text and "--version" in help_text
    bad = subprocess.run([sys.executable, "-m", "bitcipher", "build", "--corpus", "x",
                          "--window", "0"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2  # main's exit code reaches the shell


# --------------------------------------------------------------------------- licence, changelog


def test_license_is_the_apache_2_text():
    assert PROJECT["license"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    words = " ".join(text.split())
    for phrase in ("Apache License Version 2.0, January 2004",
                   "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION",
                   "2. Grant of Copyright License.", "3. Grant of Patent License.",
                   "4. Redistribution.", "7. Disclaimer of Warranty.",
                   "8. Limitation of Liability.",
                   "9. Accepting Warranty or Additional Liability.",
                   "END OF TERMS AND CONDITIONS",
                   "http://www.apache.org/licenses/LICENSE-2.0"):
        assert phrase in words, phrase
    assert len(words.split()) > 1500  # the full text, not a pointer to it


def test_changelog_records_versions_and_the_lake_format():
    from bitcipher.errors import LakeError
    from bitcipher.lake.schemas import FORMAT_VERSION

    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "Keep a Changelog" in text
    assert re.search(rf"^## \[{re.escape(bitcipher.__version__)}\]", text, re.M)
    assert re.search(r"^## \[0\.1\.0\]", text, re.M)
    # the lake format table names the current format version (first row: the newest),
    # written by this release, and the refusal's exit code
    rows = re.findall(r"^\| (\d+) \| ([^|]*) \|", text, re.M)
    assert rows and int(rows[0][0]) == FORMAT_VERSION, rows
    assert bitcipher.__version__ in rows[0][1]
    assert sorted(int(v) for v, _ in rows) == list(range(1, FORMAT_VERSION + 1))
    assert LakeError.exit_code == 4 and "exit code 4" in text
    assert "bitcipher.format_version" in text


# --------------------------------------------------------------------------- dependencies


def test_dependencies_are_ranges_and_constraints_pin_them():
    assert PROJECT["requires-python"] == ">=3.11"
    pins = constraints()
    extras = PROJECT["optional-dependencies"]
    for extra in [None, *extras]:
        for req in requirements(extra):
            assert not any(s.operator in ("==", "===") for s in req.specifier), \
                f"{req} ({extra or 'core'}) is a range, not a pin: exact versions go in " \
                f"constraints.txt"
            name = req.name.lower().replace("_", "-")
            assert name in pins, f"constraints.txt lacks {name}"
            assert req.specifier.contains(pins[name], prereleases=True), \
                f"constraints.txt pins {name}=={pins[name]}, outside {req}"


def test_core_dependencies_installed_are_the_pinned_ones():
    pins = constraints()
    for req in requirements():
        assert installed_version(req.name) == pins[req.name.lower()], req.name


def test_delta_pairing_in_the_ranges():
    core = {r.name: r.specifier for r in requirements()}
    # delta-spark 4.4 supports pyspark >=4.0.1,<=4.2.0
    assert core["pyspark"].contains("4.0.1") and core["pyspark"].contains("4.1.1")
    assert not core["pyspark"].contains("4.0.0") and not core["pyspark"].contains("4.2.1")
    assert core["delta-spark"].contains("4.4.0") and not core["delta-spark"].contains("4.5.0")


def test_make_setup_and_ci_install_with_the_constraints():
    make = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r'pip install .*-c constraints\.txt -e "\.\[test,bench,sql,s3,notebook\]"',
                     make)
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    installs = [line for line in ci.splitlines() if "pip install" in line]
    assert installs and all("-c constraints.txt" in line for line in installs)


def test_delta_artifact_follows_the_installed_versions(monkeypatch):
    import importlib.metadata

    import pyspark

    from bitcipher.runtime.session import delta_artifact

    minor = ".".join(pyspark.__version__.split(".")[:2])
    assert delta_artifact() == (f"io.delta:delta-spark_{minor}_2.13:"
                                f"{installed_version('delta-spark')}")
    real = importlib.metadata.version
    monkeypatch.setattr(pyspark, "__version__", "4.0.1")
    monkeypatch.setattr(importlib.metadata, "version",
                        lambda name: "4.4.1" if name == "delta-spark" else real(name))
    assert delta_artifact() == "io.delta:delta-spark_4.0_2.13:4.4.1"


# --------------------------------------------------------------------------- import, API


def test_import_is_cheap_and_starts_no_spark():
    code = ("import sys, time; t = time.perf_counter(); import bitcipher; "
            "print(time.perf_counter() - t); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('pyspark', 'py4j', 'delta', 'deltalake', 'gensim', 'torch', 'sklearn')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout.splitlines()
    assert out[1] == "[]", out[1]
    assert float(out[0]) < 10  # generous: a few tenths of a second on an idle machine


def test_public_api():
    for name in bitcipher.__all__:
        assert hasattr(bitcipher, name), name
    for name in ("load_vectors", "refresh", "__version__", "build", "spark_session"):
        assert name in bitcipher.__all__
    from bitcipher.incremental import run, totals  # the sub-package stays importable

    assert bitcipher.refresh is run.refresh and callable(bitcipher.refresh)
    assert totals.__name__ == "bitcipher.incremental.totals"


def test_load_vectors_rejects_an_unknown_engine(tmp_path):
    with pytest.raises(bitcipher.OptionError, match="engine must be one of"):
        bitcipher.load_vectors(tmp_path, engine="gpu")


# --------------------------------------------------------------------------- gensim


def small_kv(n=40, dim=12, seed=3):
    from bitcipher.query.keyed_vectors import KeyedVectors

    rng = np.random.default_rng(seed)
    words = [f"w{i:02d}" for i in range(n)]
    return KeyedVectors(words, np.arange(n, 0, -1) * 10,
                        rng.normal(size=(n, dim)).astype(np.float32))


def test_to_gensim_keeps_keys_vectors_and_neighbours():
    pytest.importorskip("gensim")
    from gensim.models import KeyedVectors as GensimKeyedVectors

    kv = small_kv()
    g = kv.to_gensim()
    assert isinstance(g, GensimKeyedVectors)
    assert g.vector_size == 12 and g.index_to_key == kv.words
    assert g.vectors.dtype == np.float32
    assert np.array_equal(g.vectors, kv.matrix)
    assert [g.get_vecattr(w, "count") for w in kv.words] == kv.counts.tolist()
    for word in kv.words:
        ours = kv.most_similar(word, 5)
        theirs = g.most_similar(word, topn=5)
        assert [w for w, _ in theirs] == [w for w, _ in ours], word
        np.testing.assert_allclose([s for _, s in theirs], [s for _, s in ours], rtol=1e-5)
        assert g.similarity(word, "w07") == pytest.approx(kv.similarity(word, "w07"), rel=1e-5)


def test_to_gensim_without_gensim_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "gensim", None)
    monkeypatch.setitem(sys.modules, "gensim.models", None)
    with pytest.raises(ImportError, match="to_gensim.*needs gensim: pip install"):
        small_kv().to_gensim()


def test_jars_setup_has_help_and_refuses_unknown_flags(capsys):
    from bitcipher.runtime.jars import main as setup_main

    assert setup_main(["--help"]) == 0
    assert "--no-archive" in capsys.readouterr().out
    assert setup_main(["--s4"]) == 2
    assert "usage:" in capsys.readouterr().err
