"""Every `bitcipher` command in the README runs (against a small lake built here)."""

import re
import shlex
from pathlib import Path

import pytest
from conftest import CORPUS_A, write_shards

from bitcipher.cli import main

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_commands():
    text = README.read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    return [line.split("#")[0].strip() for block in blocks for line in block.splitlines()
            if line.startswith("bitcipher ")]


def test_readme_has_commands():
    commands = readme_commands()
    assert any(c.startswith("bitcipher build") for c in commands)
    assert any(c.startswith("bitcipher sql") for c in commands)


@pytest.fixture(scope="module")
def paths(spark, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("readme")
    lines = CORPUS_A * 3 + ["the king and the queen", "a king is a king", "the king said"] * 3
    corpus = write_shards(tmp / "kjv", lines)
    return {"data/kjv": str(corpus), "./lake": str(tmp / "lake"), "/tmp/": str(tmp) + "/"}


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_runs(command, paths):
    pattern = "|".join(re.escape(old) for old in paths)
    command = re.sub(pattern, lambda m: paths[m.group(0)], command)
    argv = shlex.split(command)[1:]
    if argv[0] == "build":
        argv += ["--min-count", "1"]  # the tiny corpus has few repeated words
    elif not Path(paths["./lake"], "vectors").exists():
        main(["build", "--corpus", paths["data/kjv"], "--lake", paths["./lake"],
              "--min-count", "1"])
    assert main(argv) == 0


def test_python_example_runs(paths, spark):
    code = re.search(r"```python\n(.*?)```", README.read_text(), flags=re.S).group(1)
    code = code.replace('"data/kjv"', repr(paths["data/kjv"]))
    code = code.replace('"./lake"', repr(paths["./lake"] + "-py"))
    code = code.replace("BuildOptions(bits=32, window=5)", "BuildOptions(bits=32, window=5, min_count=1)")
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["result"].vocab_size > 5
