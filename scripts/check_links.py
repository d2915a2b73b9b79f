"""Every relative Markdown link in the repository points at a file or folder that exists.

    python scripts/check_links.py          # exit 0, or 1 with one 'FILE:LINE: TARGET' line per broken link

Checks ``[text](path)`` links (and ``![alt](path)`` images) in every ``*.md`` outside .git, virtual
environments, runs/ and caches. Skipped: URLs (``scheme:``), ``#anchors`` alone, and links inside code spans
or fenced code blocks. A ``#fragment`` or ``?query`` after the path is ignored: only the path is resolved,
relative to the Markdown file's folder.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = {".git", ".venv", ".venv-serve", "runs", "node_modules", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE_SPAN = re.compile(r"(`+).+?\1")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def markdown_files(root: Path = ROOT) -> list[Path]:
    """The repository's ``*.md`` files, outside the skipped folders, sorted."""
    return sorted(
        path
        for path in root.rglob("*.md")
        if not any(part in SKIP_DIRS or part.endswith(".egg-info") for part in path.relative_to(root).parts[:-1])
    )


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """``FILE:LINE: TARGET`` for each relative link of ``path`` whose target does not exist."""
    problems = []
    fence: str | None = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = line.lstrip()
        marker = re.match(r"(```+|~~~+)", stripped)
        if marker:
            if fence is None:
                fence = marker.group(1)
            elif stripped.startswith(fence):
                fence = None
            continue
        if fence is not None:
            continue
        for match in LINK.finditer(CODE_SPAN.sub("", line)):
            target = match.group(1)
            if SCHEME.match(target) or target.startswith("#"):
                continue
            relative = unquote(re.split(r"[#?]", target, maxsplit=1)[0])
            resolved = (root / relative.lstrip("/")) if relative.startswith("/") else (path.parent / relative)
            if not resolved.exists():
                problems.append(f"{path.relative_to(root)}:{number}: {target}")
    return problems


def main() -> int:
    problems = [problem for path in markdown_files() for problem in broken_links(path)]
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} broken relative link(s)", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
