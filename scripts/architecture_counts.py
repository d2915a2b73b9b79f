"""Count what issue 22 tracks, for a tree at ROOT (default: this checkout): python scripts/architecture_counts.py [ROOT]

* files in fashion/ over 600 lines;
* dict-style reads of manifest fields outside fashion/runtime/manifest (``x["format"]``, ``x.get("format")``
  for the keys of ArtifactEntry / InputSpec / PreprocessSpec / Manifest); a textual count, so it also
  counts plain dicts that use those keys;
* import circles: strongly connected components (size > 1) of grimp's module graph of ``fashion``
  (every import statement, function-level ones included);
* entry points not through run_cli: modules with a ``__main__`` guard or a ``[project.scripts]`` target
  whose source never mentions ``run_cli``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import tomllib  # Python 3.11+, as the project's tools

#: Fields of ArtifactEntry / Manifest / PreprocessSpec whose names are not also common result keys.
KEYS = "file|sha256|bytes|format|precision|outputs|feature_map|timings|pinned_artifact|preprocessing|split"
DICT_READ = rf"""(\[|\.get\()["']({KEYS})["']"""


def long_files(root: Path) -> list[str]:
    return [
        f"{len(p.read_text().splitlines())} {p.relative_to(root)}"
        for p in sorted((root / "fashion").rglob("*.py"))
        if len(p.read_text().splitlines()) > 600
    ]


def dict_reads(root: Path) -> list[str]:
    hits = []
    for path in sorted((root / "fashion").rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("fashion/runtime/manifest"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(DICT_READ, line) and not line.lstrip().startswith("#"):
                hits.append(f"{rel}:{number}: {line.strip()}")
    return hits


def circles(root: Path) -> list[list[str]]:
    code = (
        "import grimp, json, sys\n"
        "g = grimp.build_graph('fashion', cache_dir=None)\n"
        "print(json.dumps({m: sorted(g.find_modules_directly_imported_by(m)) for m in g.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    graph: dict[str, list[str]] = json.loads(out.stdout)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    sys.setrecursionlimit(10000)

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on.add(node)
        for nxt in graph.get(node, []):
            if nxt not in graph:
                continue
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def entry_points(root: Path) -> list[str]:
    scripts = tomllib.loads((root / "pyproject.toml").read_text())["project"]["scripts"]
    modules = {target.split(":")[0] for target in scripts.values()}
    for path in (root / "fashion").rglob("*.py"):
        if re.search(r"""__name__ == ["']__main__["']""", path.read_text()):
            modules.add(".".join(path.relative_to(root).with_suffix("").parts))
    bypass = []
    for module in sorted(modules):
        path = root / Path(*module.split("."))
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        if "run_cli" not in path.read_text():
            bypass.append(module)
    return bypass


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".").resolve()
    rows = {
        "files in fashion/ over 600 lines": long_files(root),
        "dict-style reads of manifest fields outside runtime/manifest": dict_reads(root),
        "import circles (SCCs of the module graph)": [" <-> ".join(c) for c in circles(root)],
        "entry points not through run_cli": entry_points(root),
    }
    verbose = "-v" in sys.argv
    for name, items in rows.items():
        print(f"{name}: {len(items)}")
        for item in items if verbose or len(items) < 12 else []:
            print(f"    {item}")


if __name__ == "__main__":
    main()
