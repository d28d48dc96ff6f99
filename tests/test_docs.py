"""The documentation site (mkdocs.yml, docs/) builds in strict mode, and its reference pages say
what the code does: the command-line reference is the parser's, the Python API's names exist, the
config examples load."""

import argparse
import importlib
import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from mnistlab.errors import MnistlabError

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def test_site_builds_in_strict_mode(tmp_path):
    # Strict: a warning fails the build, among them a broken link or anchor and a page left out of
    # the navigation (mkdocs.yml `validation`). Material prints a banner about MkDocs 2.0 unless told not to.
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(site)],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARNING" not in done.stderr, done.stderr
    pages = {p.relative_to(DOCS).with_suffix("") for p in DOCS.rglob("*.md")}
    built = {p.relative_to(site).parent for p in site.rglob("index.html")}
    assert {Path(".") if p.name == "index" else p for p in pages} <= built


def _cli_reference():
    spec = importlib.util.spec_from_file_location("cli_reference", DOCS / "cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_the_parsers():
    reference = _cli_reference()
    assert reference.current() == reference.generated(), (
        "docs/reference/cli.md no longer matches `mnistlab`'s flags: run python docs/cli_reference.py")


def test_cli_reference_names_every_command():
    from mnistlab.cli import build_parser

    commands = next(a for a in build_parser([])._actions if isinstance(a, argparse._SubParsersAction)).choices
    page = (DOCS / "reference" / "cli.md").read_text(encoding="utf-8")
    summary = page.split(_cli_reference().BEGIN)[0]  # the hand-written table above the generated part
    assert {name for name in commands if f"(#mnistlab-{name})" not in summary} == set()


def _resolve(dotted: str) -> object:
    """The object a dotted name on the page stands for: the longest importable module, then attributes."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:]:
            found = getattr(found, name)
        return found
    raise ImportError(dotted)


def test_python_api_page_names_what_exists():
    page = (DOCS / "reference" / "python.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`(mnistlab(?:\.\w+)+)", page))
    assert len(named) > 40, "the Python API page lost its entries"
    missing = []
    for dotted in sorted(named):
        try:
            _resolve(dotted)
        except (ImportError, AttributeError):
            missing.append(dotted)
    assert missing == [], f"docs/reference/python.md names what mnistlab does not have: {missing}"

    import mnistlab

    assert {n for n in mnistlab.__all__ if n != "__version__" and f"mnistlab.{n}" not in named} == set()


def _blocks(language: str) -> list[tuple[Path, str]]:
    return [(path, block) for path in sorted(DOCS.rglob("*.md"))
            for block in re.findall(rf"```{language}\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)]


def test_config_examples_load(tmp_path):
    """Every TOML example in the docs is a config `mnistlab train --config` takes, or a search space
    `mnistlab tune --space` takes."""
    from mnistlab.cli import build_parser, config_from_args
    from mnistlab.tune import parse_space, read_space

    examples = _blocks("toml")
    assert examples, "the docs lost their config examples"
    for i, (path, block) in enumerate(examples):
        example = tmp_path / f"example{i}.toml"
        example.write_text(block, encoding="utf-8")
        if "[space]" in block:
            parse_space(read_space(example), where=str(path))
        else:
            config_from_args(build_parser(["train"]).parse_args(["train", "--config", str(example)]))


def _documented_commands() -> list[str]:
    """Every `mnistlab ...` line of the docs' and the README's `sh` blocks, continuations joined."""
    pages = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
    blocks = [b for page in pages for b in re.findall(r"```sh\n(.*?)```", page.read_text(encoding="utf-8"), re.S)]
    lines = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    commands = [shlex.split(line, comments=True) for line in lines]
    return [shlex.join(words) for words in commands if words and words[0] == "mnistlab"]


def test_documented_commands_parse(capsys):
    """Each command the docs show is one `mnistlab` accepts: its flags exist and take those values."""
    from mnistlab.cli import build_parser, config_from_args

    commands = _documented_commands()
    assert len(commands) > 30
    refused = []
    for command in commands:
        argv = shlex.split(command)[1:]
        try:
            args = build_parser(argv).parse_args(argv)
            if args.command == "train" and not args.config:
                config_from_args(args)
        except (SystemExit, MnistlabError) as e:
            refused.append(f"{command}: {e}")
    assert refused == [], capsys.readouterr().err
