"""The README's supported-ops tables are generated from the registries, never hand-kept."""

from __future__ import annotations

from pathlib import Path

from workbench import docs

README = Path(__file__).parent.parent / "README.md"


def test_readme_tables_are_up_to_date():
    assert docs.main([str(README), "--check"]) == 0, "run `make readme-tables`"


def test_every_registry_has_a_table_with_all_its_keys():
    text = README.read_text()
    for registry in docs.registries():
        assert f"### {registry.name} ({len(registry)} entries)" in text
        for key in registry:
            assert f"| `{key}` |" in text
