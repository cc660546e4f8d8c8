"""README.md and docs/*.md stay true: their examples run, their tables match the code.

Code blocks, by their fence:

- ```bash: every `bitcipher ...` line runs (exit 0; `refresh` may also exit 5, nothing to
  do) against a small corpus and one lake shared by the whole module, in document order
  (README first, then the docs pages by name); `data/kjv`, `./lake` and `/tmp/` point into
  a temporary directory, which is also the working directory (relative outputs such as
  `vectors.txt` land there). A command repeated on another page runs once.
- ```sh, ```cron and plain ``` (S3, a cluster, Docker, the SQL endpoint, data sets not built
  here): every `bitcipher` command is parsed with the CLI's own parser and its build options
  validated, without running. So are the argv lists of Python blocks (`["bitcipher", ...]`).
- ```python: every block compiles; the blocks not marked `notrun` run, in document order with
  the commands, in the same directory.

Beside the examples: every default the pages state (`--flag` (default N), the defaults table
of docs/ALGORITHM.md, "defaults (bits N, ...)") equals `bitcipher.options.DEFAULTS` or the
CLI's own default; the commands table lists every subcommand; the exit-code table matches
`bitcipher.errors`; the Layout section names every module; the Airflow example imports what
it uses and retries exit 6 only; the `cosine` SQL is the one the package registers; and every
relative link resolves.
"""

from __future__ import annotations

import argparse
import ast
import builtins
import dataclasses
import re
import shlex
import subprocess
import sys
import types
from pathlib import Path

import pytest
from conftest import CORPUS_A, write_shards

from bitcipher import errors
from bitcipher.cli import build_options_from_args, main, parser
from bitcipher.options import DEFAULTS, MODES, PAPER, SMOOTHINGS, TRANSFORMS, WEIGHTINGS

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PACKAGE = ROOT / "pipeline" / "bitcipher"
PAGES = [README] + sorted(DOCS.glob("*.md"))
GENERATED = {DOCS / "sweep.md"}  # written by benchmarks/sweep.py, numbers only
CHECKED_PAGES = [p for p in PAGES if p not in GENERATED]

FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```", re.S | re.M)
RUN_FENCES = {"bash"}
PARSE_FENCES = {"sh", "cron", "", "console", "shell"}
OPERATORS = set(";&|()<>")
COMMAND_POSITION = {"do", "then", "else", "time", "exec", "sudo", "!"}


def rel(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


def blocks(page: Path):
    """(fence info, body, line number of the body's first line) of every fenced block."""
    text = page.read_text(encoding="utf-8")
    for m in FENCE.finditer(text):
        yield m.group(1).strip(), m.group(2), text.count("\n", 0, m.start(2)) + 1


def shell_commands(body: str) -> list[str]:
    """The `bitcipher` invocations of a shell block, one string each, in order: a command
    in command position (first word, or after `;`, `&&`, `|`, `do`, ...), also as
    `.venv/bin/bitcipher` or `python -m bitcipher`, up to the next shell operator."""
    found = []
    for line in body.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        try:
            tokens = list(lexer)
        except ValueError:
            continue
        for i, token in enumerate(tokens):
            after_m = i >= 2 and tokens[i - 1] == "-m" and tokens[i - 2].startswith("python")
            previous = tokens[i - 1] if i else ";"
            position = (set(previous) <= OPERATORS or previous in COMMAND_POSITION
                        or after_m)
            if not position or not (token == "bitcipher" or token.endswith("/bitcipher")):
                continue
            argv = []
            for t in tokens[i + 1:]:
                if set(t) <= OPERATORS:
                    break
                argv.append(t)
            found.append(shlex.join(["bitcipher", *argv]))
    return found


def python_argvs(code: str) -> list[str]:
    """`bitcipher` commands written as argv lists in Python code."""
    found = []
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, (ast.List, ast.Tuple)) and node.elts:
            values = [e.value for e in node.elts if isinstance(e, ast.Constant)]
            if len(values) == len(node.elts) and values[0] == "bitcipher" and all(
                    isinstance(v, str) for v in values):
                found.append(shlex.join(values))
    return found


@dataclasses.dataclass(frozen=True)
class Example:
    kind: str  # "run", "parse" (a bitcipher command) or "python"
    page: Path
    line: int
    text: str
    info: str = ""

    @property
    def id(self) -> str:
        first = self.text.strip().splitlines()[0] if self.text.strip() else ""
        return f"{rel(self.page)}:{self.line}:{first[:60]}"


def examples() -> list[Example]:
    found, seen = [], set()
    for page in PAGES:
        for info, body, line in blocks(page):
            fence = info.split()[0] if info else ""
            if fence == "python":
                found.append(Example("python", page, line, body, info))
                found += [Example("parse", page, line, c) for c in python_argvs(body)]
            elif fence in RUN_FENCES | PARSE_FENCES:
                for command in shell_commands(body):
                    kind = "run" if fence in RUN_FENCES and command not in seen else "parse"
                    seen.add(command)
                    found.append(Example(kind, page, line, command))
    return found


EXAMPLES = examples()


def test_pages_have_examples():
    readme = [e for e in EXAMPLES if e.page == README]
    assert any(e.kind == "run" and e.text.startswith("bitcipher build") for e in readme)
    assert any(e.kind == "run" and e.text.startswith("bitcipher sql") for e in readme)
    assert any(e.kind == "python" and "notrun" not in e.info for e in readme)
    for page in ("query.md", "refresh.md", "s3.md", "cluster.md"):
        assert any(e.page == DOCS / page for e in EXAMPLES if e.kind != "python"), page


# --------------------------------------------------------------------------- parsing


def parse(command: str) -> argparse.Namespace | None:
    """Parse like `bitcipher` would, and validate the build options; None for --version."""
    argv = shlex.split(command)[1:]
    if argv == ["--version"]:
        with pytest.raises(SystemExit) as exit_info:
            parser().parse_args(argv)
        assert exit_info.value.code == 0
        return None
    try:
        args = parser().parse_args(argv)
    except SystemExit as exc:
        raise AssertionError(f"`{command}` does not parse (exit {exc.code})") from None
    if args.command in ("build", "refresh"):
        build_options_from_args(args)
    return args


@pytest.mark.parametrize("example", [e for e in EXAMPLES if e.kind != "python"],
                         ids=lambda e: e.id)
def test_command_parses(example):
    args = parse(example.text)
    if example.kind == "run" and args is not None:
        assert args.command != "serve", "serve runs until Ctrl-C: show it in a ```sh block"


@pytest.mark.parametrize("example", [e for e in EXAMPLES if e.kind == "python"],
                         ids=lambda e: e.id)
def test_python_block_compiles(example):
    compile(example.text, example.id, "exec")


# --------------------------------------------------------------------------- running


@pytest.fixture(scope="module")
def workdir(spark, tmp_path_factory):
    """The temporary directory the examples run in: data/kjv, lake, and the cwd."""
    tmp = tmp_path_factory.mktemp("docs")
    lines = CORPUS_A * 3 + ["the king and the queen", "a king is a king", "the king said"] * 3
    write_shards(tmp / "data" / "kjv", lines)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)
        yield tmp


def paths(workdir: Path) -> dict[str, str]:
    return {"data/kjv": str(workdir / "data" / "kjv"), "./lake": str(workdir / "lake"),
            "/tmp/": str(workdir) + "/"}


def ensure_lake(workdir: Path) -> None:
    if not (workdir / "lake" / "vectors").exists():
        assert main(["build", "--corpus", paths(workdir)["data/kjv"], "--lake",
                     paths(workdir)["./lake"], "--min-count", "1"]) == 0


@pytest.mark.parametrize("example", [e for e in EXAMPLES if e.kind in ("run", "python")],
                         ids=lambda e: e.id)
def test_example_runs(example, workdir):
    mapping = paths(workdir)
    if example.kind == "python":
        if "notrun" in example.info.split():
            pytest.skip("marked notrun (compiled by test_python_block_compiles)")
        code = example.text
        for old, new in mapping.items():
            code = code.replace(repr(old).replace("'", '"'), repr(new))
        if "min_count" not in code:  # the tiny corpus has few repeated words
            code = code.replace("BuildOptions(", "BuildOptions(min_count=1, ")
        if "bitcipher.build(" not in code:
            ensure_lake(workdir)
        exec(compile(code, example.id, "exec"), {"__name__": "__docs__"})
        return
    pattern = "|".join(re.escape(old) for old in mapping)
    argv = shlex.split(re.sub(pattern, lambda m: mapping[m.group(0)], example.text))[1:]
    if argv[0] in ("build", "refresh") and "--min-count" not in argv:
        argv += ["--min-count", "1"]  # the tiny corpus has few repeated words
    if argv[0] != "build":
        ensure_lake(workdir)
    allowed = {0, errors.EXIT_NOTHING_TO_DO} if argv[0] == "refresh" else {0}
    assert main(argv) in allowed


# --------------------------------------------------------------------------- defaults


def cli_defaults() -> dict[str, set]:
    """Option name or flag -> its defaults: the BuildOptions fields, and every flag of every
    subcommand (a flag such as --format may have another default in another subcommand)."""
    known: dict[str, set] = {}
    for field in dataclasses.fields(DEFAULTS):
        known.setdefault(field.name, set()).add(getattr(DEFAULTS, field.name))
    skipped = (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._HelpAction,
               argparse._VersionAction)
    top = parser()
    subparsers = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    for sub in subparsers.choices.values():
        for action in sub._actions:
            if (action.option_strings and not isinstance(action, skipped)
                    and action.default not in (None, argparse.SUPPRESS)):
                for flag in action.option_strings:
                    known.setdefault(flag, set()).add(action.default)
    return known


def same(written: str, value) -> bool:
    text = written.strip().strip("`").strip().lower()
    if value is None:
        return text.startswith("none")
    if isinstance(value, bool):
        return text == str(value).lower()
    if isinstance(value, (int, float)):
        try:
            return float(text.replace(",", "")) == float(value)
        except ValueError:
            return False
    return text == str(value).lower()


VALUE = r"(`[^`]+`|\d[\d,]*(?:\.\d+)?|[A-Za-z_][\w-]*)"
STATED = re.compile(r"`([\w-]+)`\s*(?:\(\s*|,\s*)default:?\s+" + VALUE)
BARE = re.compile(r"\bdefaults?:?\s+(\d[\d,]*(?:\.\d+)?)")
LISTED = re.compile(r"\bdefaults\s*\(([^)]*)\)")
IN_LIST = re.compile(r"`(--?[\w-]+)`\s*\((\d[\d,]*(?:\.\d+)?)\b")


def stated_defaults(text: str):
    """(name, written value) of every `NAME` (default V) / `NAME`, default V."""
    return [(m.group(1), m.group(2)) for m in STATED.finditer(text)]


@pytest.mark.parametrize("page", CHECKED_PAGES, ids=rel)
def test_stated_defaults_are_the_real_ones(page):
    text = page.read_text(encoding="utf-8")
    known = cli_defaults()
    for name, written in stated_defaults(text):
        if name in known:
            assert any(same(written, v) for v in known[name]), (
                f"{rel(page)}: `{name}` default {written}, but the code says {known[name]}")
    # a bare "default 5" must belong to a named option or flag (and was checked above)
    covered = {m.start(0) + m.group(0).index("default") for m in STATED.finditer(text)}
    for m in BARE.finditer(text):
        assert m.start(0) in covered, (
            f"{rel(page)}: {text[max(0, m.start() - 60):m.end()]!r}: write it as "
            f"`--flag` (default N) so this test can check it")
    # "... lists every option with its default: `--bits` (32, or `auto`), `--window` (5)"
    for sentence in re.split(r"\.\s|\n\n", text):
        if "default" in sentence:
            for name, written in IN_LIST.findall(sentence):
                if name in known:
                    assert any(same(written, v) for v in known[name]), (
                        f"{rel(page)}: `{name}` ({written}...), but the code's default is "
                        f"{known[name]}")
    # "the defaults (bits 256, window 2, ppmi)"
    for m in LISTED.finditer(text):
        listed = m.group(1)
        for name in ("bits", "window"):
            for value in re.findall(rf"\b{name}\s+(\d+)", listed):
                assert int(value) == getattr(DEFAULTS, name), f"{rel(page)}: {m.group(0)}"
        words = set(re.findall(r"[a-z0-9]+", listed.lower()))
        for name, choices in (("mode", MODES), ("weighting", WEIGHTINGS),
                              ("smoothing", SMOOTHINGS), ("transform", TRANSFORMS)):
            for choice in words & set(choices):
                assert choice == getattr(DEFAULTS, name), f"{rel(page)}: {m.group(0)}"


def section(page: Path, heading: str) -> str:
    text = page.read_text(encoding="utf-8")
    m = re.search(rf"^(#+) {re.escape(heading)}\s*$", text, flags=re.M)
    assert m, f"{rel(page)} has no section {heading!r}"
    end = re.search(rf"^#{{1,{len(m.group(1))}}} ", text[m.end():], flags=re.M)
    return text[m.end(): m.end() + end.start() if end else len(text)]


def table_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not re.match(r"^\|[\s|:-]+\|$", line):
            cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
            rows.append([c.strip() for c in cells])
    return rows


def test_algorithm_defaults_table_is_complete_and_true():
    rows = table_rows(section(DOCS / "ALGORITHM.md", "Defaults"))
    header, body = rows[0], rows[1:]
    name_col, default_col = header.index("option"), header.index("default")
    written = {r[name_col].strip("`"): r[default_col] for r in body}
    fields = {f.name for f in dataclasses.fields(DEFAULTS)}
    assert set(written) == fields, "the defaults table lists every BuildOptions field"
    for name, value in written.items():
        assert same(value, getattr(DEFAULTS, name)), f"{name}: doc {value!r}, code " \
                                                     f"{getattr(DEFAULTS, name)!r}"
    # the flag column: real `build` flags, and the flag of every option that has one
    flag_col = header.index("flag")
    shown = {r[name_col].strip("`"): set(re.findall(r"`(--[\w-]+)`", r[flag_col])) for r in body}
    top = parser()
    subparsers = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    build_flags = subparsers.choices["build"]._option_string_actions
    for name, flags in shown.items():
        assert flags <= set(build_flags), (name, flags - set(build_flags))
        wanted = {a.option_strings[0] for a in set(build_flags.values())
                  if a.dest == name and a.option_strings}
        assert wanted <= flags, f"{name}: the defaults table should show {wanted}"


def test_algorithm_names_the_papers_settings():
    flags = re.search(r"`(--bits \d+ --window \d+[^`]*)`", section(DOCS / "ALGORITHM.md",
                                                                  "Defaults")).group(1)
    args = parser().parse_args(["build", "--corpus", "x", *shlex.split(flags)])
    assert build_options_from_args(args) == PAPER


# --------------------------------------------------------------------------- tables


def test_commands_table_lists_every_command():
    top = parser()
    subparsers = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    rows = table_rows(section(README, "Commands"))[1:]
    listed = [re.match(r"`(\w+)", r[0]).group(1) for r in rows]
    assert sorted(listed) == sorted(subparsers.choices)
    for row in rows:  # the flags a row shows are real
        shown = re.match(r"`([^`]+)`", row[0]).group(1).replace("\\|", "|")
        command = shown.split()[0]
        flags = set(re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", shown))
        options = subparsers.choices[command]._option_string_actions
        assert flags <= set(options), (command, flags - set(options))


def test_exit_code_table_matches_the_errors():
    rows = {int(r[0]): r[1].lower() for r in table_rows(section(README, "Exit codes"))[1:]}
    assert sorted(rows) == [0, 1, 2, 3, 4, 5, 6]
    assert errors.EXIT_OK == 0 and errors.BitCipherError.exit_code == 1
    assert "option" in rows[errors.OptionError.exit_code]
    assert "input" in rows[errors.InputError.exit_code]
    assert "lake" in rows[errors.LakeError.exit_code]
    assert "nothing to do" in rows[errors.EXIT_NOTHING_TO_DO]
    assert "concurrent" in rows[errors.ConflictError.exit_code]


def test_layout_names_every_module():
    layout = section(README, "Layout")
    bullets = re.split(r"\n- ", layout)
    for path in sorted(PACKAGE.rglob("*.py")):
        part = path.relative_to(PACKAGE)
        if len(part.parts) == 1:
            assert f"`{part.name}`" in layout, f"Layout does not name {part}"
        else:
            package = part.parts[0]
            bullet = [b for b in bullets if b.startswith(f"`{package}/`")]
            assert bullet, f"Layout has no bullet for {package}/"
            if part.name != "__init__.py":
                assert f"`{part.name}`" in bullet[0], f"Layout does not name {part}"


def test_stage_modules_exist():
    for module in re.findall(r"`((?:stages|lake|query|refresh|runtime)/\w+\.py)`",
                             README.read_text(encoding="utf-8")):
        assert (PACKAGE / module).is_file(), module


def test_cosine_sql_is_the_registered_one():
    from bitcipher.query.keyed_vectors import COSINE_SQL

    sql = [b for info, b, _ in blocks(DOCS / "query.md") if info == "sql"]
    assert len(sql) == 1
    assert " ".join(sql[0].split()) == " ".join(COSINE_SQL.split())


# --------------------------------------------------------------------------- Airflow


def airflow_block() -> str:
    found = [b for info, b, _ in blocks(DOCS / "refresh.md")
             if info.startswith("python") and "airflow" in b]
    assert len(found) == 1
    return found[0]


def test_airflow_example_defines_every_name_it_uses():
    tree = ast.parse(airflow_block())
    defined = set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            defined |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
            defined |= {a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg)}
        elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            defined.add(node.id)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            defined.add(node.name)
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    assert used <= defined, f"used but neither defined nor imported: {used - defined}"


def fake_airflow(monkeypatch) -> dict:
    """Just enough of Airflow's modules to run the example's DAG file: its exception
    classes and an operator that records its arguments."""
    made = {}

    class AirflowException(Exception):
        pass

    class AirflowSkipException(AirflowException):
        pass

    class AirflowFailException(AirflowException):
        pass

    class DAG:
        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    class Operator:
        def __init__(self, **kwargs):
            made["operator"] = kwargs

    modules = {
        "airflow": {"DAG": DAG},
        "airflow.exceptions": {"AirflowException": AirflowException,
                               "AirflowSkipException": AirflowSkipException,
                               "AirflowFailException": AirflowFailException},
        "airflow.providers": {}, "airflow.providers.standard": {},
        "airflow.providers.standard.operators": {},
        "airflow.providers.standard.operators.python": {"PythonOperator": Operator},
        "airflow.operators": {}, "airflow.operators.python": {"PythonOperator": Operator},
        "airflow.operators.bash": {"BashOperator": Operator},
    }
    for name, attrs in modules.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, module)
    made.update(Skip=AirflowSkipException, Fail=AirflowFailException, Error=AirflowException)
    return made


def test_airflow_example_retries_conflicts_only(monkeypatch):
    made = fake_airflow(monkeypatch)
    exit_code = {}
    ran = []

    def fake_run(argv, *args, **kwargs):
        ran.append(list(argv))
        return subprocess.CompletedProcess(argv, exit_code["rc"])

    monkeypatch.setattr(subprocess, "run", fake_run)
    exec(compile(airflow_block(), "docs/refresh.md (Airflow)", "exec"), {"__name__": "dag"})
    operator = made["operator"]
    assert operator.get("retries", 0) > 0, "a conflict (exit 6) is worth a retry"
    callable_ = operator["python_callable"]
    outcomes = {}
    for rc in range(7):
        exit_code["rc"] = rc
        try:
            callable_()
            outcomes[rc] = "success"
        except made["Skip"]:
            outcomes[rc] = "skipped"
        except made["Fail"]:
            outcomes[rc] = "failed, no retry"
        except made["Error"]:
            outcomes[rc] = "failed, retried"
    assert outcomes == {0: "success", 1: "failed, no retry", 2: "failed, no retry",
                        3: "failed, no retry", 4: "failed, no retry", 5: "skipped",
                        6: "failed, retried"}
    assert ran and all(parse(shlex.join(argv)).command == "refresh" for argv in ran)
    # frozen on weekdays, exact (a new epoch) on Sundays
    import datetime as dt

    exit_code["rc"] = 0
    for day, frozen in ((dt.datetime(2026, 12, 5), True), (dt.datetime(2026, 12, 6), False)):
        ran.clear()
        callable_(logical_date=day)
        assert parse(shlex.join(ran[0])).frozen is frozen, day.strftime("%A")


# --------------------------------------------------------------------------- links


def anchors(page: Path) -> set[str]:
    out = set()
    for heading in re.findall(r"^#+ (.+)$", page.read_text(encoding="utf-8"), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        out.add(slug)
    return out


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_links_resolve(page):
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.exists(), f"{rel(page)}: broken link {target}"
        if anchor and resolved.suffix == ".md":
            assert anchor in anchors(resolved), f"{rel(page)}: no heading for {target}"


def test_readme_first_screen_order():
    headings = re.findall(r"^## (.+)$", README.read_text(encoding="utf-8"), flags=re.M)
    assert headings[:7] == ["Install", "Two commands", "Python", "Commands", "Exit codes",
                            "Documentation", "Stages"]
