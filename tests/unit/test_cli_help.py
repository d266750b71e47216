"""`--help` of the commands a new user meets first reads well in an 80-column terminal."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from modelops.cli import app

pytestmark = pytest.mark.unit

COMMANDS = ("train", "generate-data", "serve", "drift-exporter")
#: narrowest help column accepted: below this a sentence wraps every two or three words
MIN_HELP_COLUMN = 28


def _render(name: str) -> str:
    res = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert res.exit_code == 0, res.output
    return res.output


def _command(name: str) -> Any:
    commands: dict[str, Any] = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    return commands[name]


@pytest.mark.parametrize("name", COMMANDS)
def test_help_fits_80_columns(name: str) -> None:
    too_long = [line for line in _render(name).splitlines() if len(line) > 80]
    assert too_long == []


@pytest.mark.parametrize("name", COMMANDS)
def test_no_sentence_is_broken_by_a_hard_line_break(name: str) -> None:
    """Rich keeps the line breaks of every paragraph after the first; a paragraph is one line or a \\b block."""
    paragraphs = inspect.cleandoc(_command(name).help or "").split("\n\n")[1:]
    for paragraph in paragraphs:
        if paragraph.startswith("\b"):  # kept as written on purpose (a table): each line must fit
            assert all(len(line) <= 76 for line in paragraph.splitlines()), paragraph
        else:
            assert "\n" not in paragraph, f"{name}: line break inside {paragraph!r}"
    for param in _command(name).params:
        assert "\n" not in (getattr(param, "help", None) or ""), param.name


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_help_column_is_wide_enough_to_read(name: str) -> None:
    lines = _render(name).splitlines()
    widths = {}
    for param in _command(name).params:
        help_text = getattr(param, "help", None)
        if not help_text:
            continue
        option, first_word = max(param.opts, key=len), help_text.split()[0]
        for line in lines:
            if option in line and first_word in line[line.index(option) + len(option):]:
                start = line.index(first_word, line.index(option) + len(option))
                widths[option] = line.rstrip().rindex("│") - start - 1
                break
        assert option in widths, f"{option} not found in --help"
    narrow = {opt: w for opt, w in widths.items() if w < MIN_HELP_COLUMN}
    assert narrow == {}, f"{name}: help columns narrower than {MIN_HELP_COLUMN}: {narrow}"
