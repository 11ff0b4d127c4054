"""The README stays true to the code it describes."""

from __future__ import annotations

from pathlib import Path

from castghl_app.settings import SETTINGS, settings_markdown

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_the_readme_opens_with_the_two_set_up_commands():
    """The first code block is exactly `make demo` then `make test`."""
    block = README.split("```")[1].splitlines()
    commands = [line.split("#")[0].strip() for line in block[1:] if line.strip()]
    assert commands == ["make demo", "make test"]


def test_every_setting_is_in_the_readme_table():
    """Each CASTGHL_* variable has a row in the README's settings table."""
    missing = [s.env for s in SETTINGS if f"| `{s.env}` |" not in README]
    assert missing == []


def test_the_readme_table_is_the_generated_one():
    """The table between the markers is `castghl settings --markdown`."""
    start = README.index("<!-- settings:start")
    start = README.index("\n", start) + 1
    end = README.index("<!-- settings:end -->")
    assert README[start:end].strip() == settings_markdown()
