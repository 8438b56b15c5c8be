"""The README's configuration reference and the settings' definition cannot drift: every
variable of `Settings` has a row, every `PAYKUBE_*` row is a setting, and a default the
table states in code (`20`, `0.0.0.0`) is the field's default."""

from __future__ import annotations

import re

from paykube.settings import Settings, env_name
from paykube_dev.kube import REPO

VARIABLE = re.compile(r"`(PAYKUBE_[A-Z0-9_]+)`")


def reference_rows() -> list[tuple[list[str], str]]:
    """(variables, default cell) of each row of the README's configuration table."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Configuration reference", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 3:
            rows.append((VARIABLE.findall(cells[0]), cells[1]))
    return rows


def test_every_setting_has_a_row_and_every_row_is_a_setting() -> None:
    documented = [v for variables, _ in reference_rows() for v in variables]
    assert len(documented) == len(set(documented)), "a variable is listed twice"
    assert sorted(documented) == sorted(Settings.env_names())


def shown(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def test_defaults_stated_in_the_table_are_the_fields_defaults() -> None:
    fields = {env_name(name): field for name, field in Settings.model_fields.items()}
    checked = 0
    for variables, cell in reference_rows():
        values = [v.strip() for v in cell.split(" / ")]
        if not variables or len(values) != len(variables):
            continue
        for variable, value in zip(variables, values, strict=True):
            if value.startswith("`") and value.endswith("`"):
                assert shown(fields[variable].default) == value.strip("`"), variable
                checked += 1
    assert checked >= 20  # the check itself must not go silent
