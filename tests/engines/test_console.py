from __future__ import annotations

import io
import logging
import sys
import unittest
import warnings
from unittest import mock

from parameterized import parameterized

from bundle.engines.console import case_bar, case_result_line, configure_console

RECORDS = [
    ({"case": "Chest_CT", "status": "done", "seconds": 29.43, "n_lesions": 5, "skipped_fraction": 0.58}, 2, 5,
     logging.INFO, "[2/5] Chest_CT: done, 5 lesions in 29.4 s, 58 % of windows skipped"),
    ({"case": "a", "status": "done", "seconds": 1.0, "n_lesions": 1, "skipped_fraction": None}, 1, None,
     logging.INFO, "[1] a: done, 1 lesion in 1.0 s"),
    ({"case": "b", "status": "failed", "seconds": 0.21, "error": "/d/b.nii.gz: EOFError: truncated"}, 3, 5,
     logging.WARNING, "[3/5] b: failed after 0.2 s: /d/b.nii.gz: EOFError: truncated"),
    ({"case": "c", "status": "skipped", "seconds": 0.0}, 4, 5,
     logging.INFO, "[4/5] c: skipped, its lesions.json exists (overwrite=False)"),
]  # fmt: skip


class Terminal(io.StringIO):
    """A stand-in for stderr on a terminal."""

    def isatty(self) -> bool:
        return True


class TestResultLine(unittest.TestCase):
    @parameterized.expand(RECORDS)
    def test_line(self, record, index, total, level, line):
        self.assertEqual(case_result_line(record, index, total), (level, line))


class TestCaseBar(unittest.TestCase):
    def test_no_bar_without_a_terminal(self):
        stderr = io.StringIO()
        with mock.patch.object(sys, "stderr", stderr):
            with case_bar(True, 3) as bar:
                self.assertIsNone(bar)
        self.assertEqual(stderr.getvalue(), "")

    def test_disabled_on_a_terminal(self):
        with mock.patch.object(sys, "stderr", Terminal()):
            with case_bar(False, 3) as bar:
                self.assertIsNone(bar)

    def test_one_live_bar_and_log_lines_above_it(self):
        """On a terminal: one bar on stderr, a log line written meanwhile clears it first and redraws it after;
        the bar is removed at the end and the console handler gets its own stream back."""
        terminal = Terminal()
        handler = logging.StreamHandler(terminal)
        root = logging.getLogger()
        root.addHandler(handler)
        try:
            with mock.patch.object(sys, "stderr", terminal):
                handler.setStream(sys.stderr)  # the console handler of configs/logging.conf, here on stderr
                with case_bar(True, 2) as bar:
                    self.assertIsNotNone(bar)
                    bar.set_postfix_str("Chest_CT")
                    logging.getLogger("bundle.test").warning("[1/2] Chest_CT: done")
                    bar.update(1)
                    self.assertIsNot(handler.stream, terminal)
                self.assertIs(handler.stream, terminal)
        finally:
            root.removeHandler(handler)
        text = terminal.getvalue()
        self.assertIn("cases:", text)
        self.assertIn("Chest_CT", text)
        before, after = text.split("[1/2] Chest_CT: done\n")
        self.assertTrue(before.endswith("\r"), repr(before[-40:]))  # the bar was cleared before the line
        self.assertIn("cases:", after)  # and drawn again below it
        self.assertTrue(text.rstrip(" ").endswith("\r"), repr(text[-40:]))  # removed at the end (leave=False)


class TestConfigureConsole(unittest.TestCase):
    def tearDown(self):
        logging.disable(logging.NOTSET)

    def test_quiet_leaves_only_errors(self):
        log = logging.getLogger("monai.bundle.test_console")
        with warnings.catch_warnings():
            configure_console(quiet=True)
            self.assertFalse(log.isEnabledFor(logging.WARNING))
            self.assertTrue(log.isEnabledFor(logging.ERROR))
            with warnings.catch_warnings(record=True) as caught:
                warnings.warn("a deprecation", UserWarning)  # catch_warnings(record=True) keeps the filters
            self.assertEqual(caught, [])

    def test_not_quiet_changes_nothing(self):
        configure_console(quiet=False)
        self.assertTrue(logging.getLogger("bundle.test_console").isEnabledFor(logging.WARNING))

    def test_flag_of_wrong_type(self):
        with self.assertRaisesRegex(TypeError, "quiet must be True or False, got quiet='maybe'"):
            configure_console(quiet="maybe")


if __name__ == "__main__":
    unittest.main()
