"""Printing tables and ladder lines: rich on a terminal, plain text otherwise."""

from __future__ import annotations

import sys


def print_table(
    columns: list[str], cells: list[list[str]], title: str, *, header: bool = True
) -> None:
    from ustack.observe.introspect import format_plain

    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, show_header=header, header_style="bold")
        for i, name in enumerate(columns):
            table.add_column(name, justify="right" if i in (1, 2) else "left")
        for line in cells:
            table.add_row(*line)
        Console().print(table)
    else:
        lines = format_plain(columns, cells)
        for text in lines if header else lines[1:]:
            print(text)


def emit_lines(lines: list[str]) -> None:
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.markup import escape

        console = Console(highlight=False, soft_wrap=True)
        for line in lines:
            style = ""
            if line.startswith("connection "):
                style = "bold"
            elif "RST" in line:
                style = "red"
            elif "<-" in line:
                style = "yellow"
            elif "->" in line or "-->" in line:
                style = "cyan"
            if "(known)" in line:
                style = "green"
            console.print(f"[{style}]{escape(line)}[/]" if style else escape(line))
    else:
        for line in lines:
            print(line)
        sys.stdout.flush()
