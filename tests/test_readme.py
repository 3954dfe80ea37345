"""The README's library example runs as written."""

import re
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_readme_library_example_runs(monkeypatch):
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Using the library"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(ROOT)
    exec(compile(code, "README.md", "exec"), {})
