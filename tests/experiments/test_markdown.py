"""bundle.experiments.markdown: one table builder, the same tables the benchmark and the analyses wrote before."""

from __future__ import annotations

import functools
import unittest

from bundle.experiments.markdown import decimal_cell, markdown_table, significant_cell

ROWS = [
    {"a": 0.123456, "b": {"high": 1, "medium": 2, "low": 3, "gated": 0}, "c": 1e-5, "d": float("nan"), "e": 7,
     "f": 0.0},
    {"a": None, "b": "x", "c": -0.00012345, "d": float("inf"), "e": "s", "f": 123.456789},
]
COLUMNS = [(k, k.upper()) for k in "abcdef"]
HEADER = "| A | B | C | D | E | F |\n|---|---|---|---|---|---|\n"


class TestMarkdownTable(unittest.TestCase):
    def test_benchmark_cells(self):
        """The benchmark's tables: 3 significant digits, window counts high/medium/low/gated, None empty."""
        self.assertEqual(markdown_table(ROWS, COLUMNS), HEADER + "| 0.123 | 1/2/3/0 | 1e-05 | nan | 7 | 0 |\n"
                         "|  | x | -0.000123 | inf | s | 123 |")  # fmt: skip
        self.assertEqual(markdown_table(ROWS, COLUMNS, significant_cell), markdown_table(ROWS, COLUMNS))
        self.assertEqual(significant_cell({"low": 3, "high": 1}), "1/3")  # the tiers it holds, in report order

    def test_analysis_cells(self):
        """The analyses' tables: fixed decimals (significant digits below 1e-3), None and non-finite as '-'."""
        dict_cell = "{'high': 1, 'medium': 2, 'low': 3, 'gated': 0}"
        self.assertEqual(markdown_table(ROWS, COLUMNS, decimal_cell), HEADER + f"| 0.123 | {dict_cell} | 1e-05 | - | 7 "
                         "| 0.000 |\n| - | x | -0.000123 | - | s | 123.457 |")  # fmt: skip
        two = functools.partial(decimal_cell, digits=2)
        self.assertEqual(markdown_table(ROWS, COLUMNS, two), HEADER + f"| 0.12 | {dict_cell} | 1e-05 | - | 7 | 0.00 |\n"
                         "| - | x | -0.00012 | - | s | 123.46 |")  # fmt: skip

    def test_no_rows_and_missing_keys(self):
        self.assertEqual(markdown_table([], [("a", "A")]), "| A |\n|---|")
        self.assertEqual(markdown_table([{}], [("a", "A")]).splitlines()[-1], "|  |")
        self.assertEqual(markdown_table([{}], [("a", "A")], decimal_cell).splitlines()[-1], "| - |")


if __name__ == "__main__":
    unittest.main()
