"""A click group that imports a command's module only when that command runs.

The command line has many commands whose modules import the engine, Dagster, pandas, reportlab,
pyarrow or every SQLAlchemy dialect. Importing them all took ~2 s before any command ran, and
``explain`` paid it on every call. ``LazyGroup`` knows each command by a ``LazyCommand`` entry
(module, attribute, short help); ``--help`` lists the commands from those entries without
importing anything, and ``get_command`` imports the one module a command needs.
"""

from __future__ import annotations

import importlib
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import click


@dataclass(frozen=True, slots=True)
class LazyCommand:
    """Where a command lives, and the short help ``--help`` shows for it (its docstring's first
    sentence: the CLI tests check the two agree)."""

    module: str
    attribute: str
    short_help: str

    def load(self) -> click.Command:
        command = getattr(importlib.import_module(self.module), self.attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.module}.{self.attribute} is not a click command")
        return command


def shorten(text: str, limit: int) -> str:
    """The short help cut to ``limit`` characters as click cuts it (whole words, "...")."""
    if len(text) <= limit:
        return text
    if limit < len("..."):
        return "..."
    return textwrap.shorten(text, limit, placeholder="...", break_on_hyphens=False)


class LazyGroup(click.Group):
    def __init__(self, *args: Any, lazy: Mapping[str, LazyCommand], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            command = self.lazy[cmd_name].load()
            if command.name != cmd_name:
                raise TypeError(f"command {cmd_name!r} is named {command.name!r} in its module")
            self.add_command(command)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from the table: short help without importing any command."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            entry = self.lazy.get(name)
            if entry is None or name in self.commands:
                command = super().get_command(ctx, name)
                if command is None or command.hidden:
                    continue
                rows.append((name, command.get_short_help_str(limit)))
            else:
                rows.append((name, shorten(entry.short_help, limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)
