"""Relative Markdown links resolve (scripts/check_links.py): results/ moves, doc renames and typos are caught."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from tests.conftest import ROOT


def _checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_links", ROOT / "scripts" / "check_links.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_relative_markdown_link_resolves():
    checker = _checker()
    files = checker.markdown_files()
    assert ROOT / "README.md" in files and ROOT / "results" / "README.md" in files
    assert not any(part == ".venv" for path in files for part in path.parts)
    problems = [problem for path in files for problem in checker.broken_links(path)]
    assert not problems, "broken relative links:\n" + "\n".join(problems)


def test_the_checker_reports_broken_links_only(tmp_path):
    checker = _checker()
    (tmp_path / "docs").mkdir()
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "x.md").write_text("# x\n", encoding="utf-8")
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "[ok](../results/x.md) [ok with anchor](../results/x.md#x) [web](https://example.com/a.md) [here](#top)\n"
        "![image](missing.png) and `[in code](gone.md)`\n"
        "```\n[in a block](gone.md)\n```\n"
        "[old](../benchmarks/results/x.md)\n",
        encoding="utf-8",
    )
    assert checker.broken_links(page, tmp_path) == [
        "docs/page.md:2: missing.png",
        "docs/page.md:6: ../benchmarks/results/x.md",
    ]
