"""The one CSV writer: cells that a spreadsheet would run as a formula are neutralised.

A class named `=1+1` or a file named `=HYPERLINK("http://...")` written as-is into a CSV becomes
a live formula when the CSV is opened in Excel, LibreOffice or Google Sheets (CSV injection,
OWASP). Every CSV clipcls writes goes through `csv_writer`, which prefixes a text cell beginning
with `=`, `+`, `-`, `@`, a tab or a carriage return with an apostrophe (the spreadsheet shows the
text, not a result). Numbers, including negative ones, are written unchanged.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any, TextIO

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def safe_cell(value: Any) -> Any:
    """`value`, or the text with a leading apostrophe when a spreadsheet would read it as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not _is_number(value.strip()):
        return "'" + value
    return value


class SafeWriter:
    """`csv.writer` with every cell passed through `safe_cell`."""

    def __init__(self, stream: TextIO, **kwargs: Any) -> None:
        self._writer = csv.writer(stream, **kwargs)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._writer.writerow([safe_cell(cell) for cell in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def csv_writer(stream: TextIO, **kwargs: Any) -> SafeWriter:
    """A CSV writer for `stream` (opened with newline="") that neutralises formula cells."""
    return SafeWriter(stream, **kwargs)
