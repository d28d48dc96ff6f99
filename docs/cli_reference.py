"""The command-line reference: docs/reference/cli.md's command sections, written from `mnistlab`'s
own parser, so that every command and flag is there with the help and default `--help` shows.

    python docs/cli_reference.py     # rewrite them after a command or a flag changes

tests/test_docs.py fails while the page differs from what this writes. The page is committed, not
made during the build, so that it reads the same on GitHub as on the site.
"""

from __future__ import annotations

import argparse
from pathlib import Path

PAGE = Path(__file__).resolve().parent / "reference" / "cli.md"
BEGIN = "<!-- Written by docs/cli_reference.py from the parser: change the flags, then run it. -->"
END = "<!-- End of the part written by docs/cli_reference.py. -->"


def _text(help_text: str) -> str:
    """Help text as Markdown: code spans kept, everything else escaped (`<RUN>`, `*`, `_`)."""
    parts = help_text.split("`")
    for i in range(0, len(parts), 2):  # outside code spans
        for char in "\\*_[]":
            parts[i] = parts[i].replace(char, "\\" + char)
        parts[i] = parts[i].replace("<", "&lt;")
    return "`".join(parts)


def _value(action: argparse.Action) -> str:
    if action.metavar is not None:
        return action.metavar
    if action.choices:
        return "{" + ",".join(map(str, action.choices)) + "}"
    return action.dest.upper()


def _synopsis(name: str, parser: argparse.ArgumentParser) -> str:
    if parser.usage:
        return parser.usage.replace(" [-h]", "")
    words = [f"mnistlab {name}"]
    for action in parser._actions:
        if action.option_strings:
            continue
        value = _value(action)
        words.append({"+": f"{value}...", "?": f"[{value}]", "*": f"[{value}...]"}.get(action.nargs, value))
    if any(a.option_strings and not isinstance(a, argparse._HelpAction) for a in parser._actions):
        words.append("[options]")
    return " ".join(words)


def _item(action: argparse.Action) -> str:
    if action.option_strings:
        takes_value = action.nargs != 0
        names = [f"`{flag} {_value(action)}`" if takes_value else f"`{flag}`" for flag in action.option_strings]
        if action.nargs in ("+", "*"):
            names = [name[:-1] + " ...`" for name in names]
    else:
        names = [f"`{_value(action)}`"]
    # As --help shows it: %(default)s filled in, %% a percent sign.
    help_text = _text(argparse.HelpFormatter("mnistlab")._expand_help(action)) if action.help else ""
    return f"- {', '.join(names)}" + (f": {help_text}" if help_text else "")


def _section(name: str, parser: argparse.ArgumentParser, summary: str) -> list[str]:
    about = parser.description or summary[:1].upper() + summary[1:] + "."
    lines = [f"## mnistlab {name}", "", _text(about), "", "```text", _synopsis(name, parser), "```"]
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if not isinstance(a, argparse._HelpAction)]
        if not actions:
            continue
        title = {"positional arguments": "Arguments", "options": "Options"}.get(group.title, group.title)
        lines += ["", f"**{title[:1].upper() + title[1:]}**", ""] + [_item(a) for a in actions]
    return lines + [""]


def generated() -> str:
    """The part of docs/reference/cli.md between BEGIN and END, from build_parser()."""
    from mnistlab.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    summaries = {choice.dest: choice.help for choice in commands._choices_actions}
    lines = [BEGIN, ""]
    for name, sub in commands.choices.items():
        lines += _section(name, sub, summaries[name])
    return "\n".join(lines + [END])


def current() -> str:
    """The part of the page between BEGIN and END as it is now."""
    return _split(PAGE.read_text(encoding="utf-8"))[1]


def _split(page: str) -> tuple[str, str, str]:
    before, found, rest = page.partition(BEGIN)
    middle, found_end, after = rest.partition(END)
    if not (found and found_end):
        raise SystemExit(f"{PAGE} has lost its markers; put back {BEGIN!r} and {END!r}")
    return before, BEGIN + middle + END, after


def write() -> bool:
    """Rewrite the generated part of the page; True when it changed."""
    before, old, after = _split(PAGE.read_text(encoding="utf-8"))
    new = generated()
    if new != old:
        PAGE.write_text(before + new + after, encoding="utf-8")
    return new != old


if __name__ == "__main__":
    print(f"{PAGE}: {'rewritten' if write() else 'already current'}")
