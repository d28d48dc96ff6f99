"""The README's Python walkthrough runs as written, so the documentation cannot go stale."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run(mnist, tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) >= 3, "the README walkthrough lost its code"
    monkeypatch.chdir(tmp_path)  # it saves files: keep them out of the checkout
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 - our own README
    assert (tmp_path / "recipe.keras").is_file()
    assert (tmp_path / "runs" / "recipe-linear" / "metrics.json").is_file()
