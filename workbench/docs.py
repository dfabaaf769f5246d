"""Generate the README's supported-ops tables from the converter registries.

Every reader and writer registers its converters in a ``Registry``; this module
imports them all, collects the registries and renders one Markdown table each,
between the markers ``<!-- ops-tables:start -->`` and ``<!-- ops-tables:end -->``
of README.md. ``python -m workbench.docs README.md`` rewrites that block;
``--check`` only reports whether it is up to date (the test suite runs it).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path

from .registry import Registry

START = "<!-- ops-tables:start -->"
END = "<!-- ops-tables:end -->"
_PACKAGES = ("workbench.readers", "workbench.writers")


def registries() -> list[Registry]:
    """Every module-level Registry in the readers and writers, sorted by name."""
    found: dict[int, Registry] = {}
    for package_name in _PACKAGES:
        package = importlib.import_module(package_name)
        for info in pkgutil.walk_packages(package.__path__, prefix=f"{package_name}."):
            module = importlib.import_module(info.name)
            for value in vars(module).values():
                if isinstance(value, Registry):
                    found[id(value)] = value
    return sorted(found.values(), key=lambda registry: registry.name)


def render_tables() -> str:
    blocks = []
    for registry in registries():
        rows = "\n".join(f"| `{key}` | {doc.replace('|', '/')} |" for key, doc in registry.rows())
        blocks.append(f"### {registry.name} ({len(registry)} entries)\n\n| type | conversion |\n|---|---|\n{rows}\n")
    return "\n".join(blocks)


def updated_readme(text: str) -> str:
    if START not in text or END not in text:
        raise SystemExit(f"README has no {START} ... {END} block")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{render_tables()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("readme", type=Path)
    parser.add_argument("--check", action="store_true", help="exit 1 if the tables are out of date")
    args = parser.parse_args(argv)
    text = args.readme.read_text()
    new = updated_readme(text)
    if args.check:
        if new != text:
            print(f"{args.readme}: supported-ops tables are out of date; run `make readme-tables`")
            return 1
        return 0
    args.readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
