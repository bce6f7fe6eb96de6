"""One-line error descriptions (bundle.io.errors)."""

from __future__ import annotations

import unittest

from parameterized import parameterized

from bundle.io.errors import describe_exception, error_record

# the shape of MONAI LoadImage's message when every reader failed: headline, then each reader's traceback
READER_TRACEBACKS = """LoadImage cannot find a suitable reader.
    Please install the reader libraries.
Traceback (most recent call last):
  File "x.py", line 1, in read
ValueError: a

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "y.py", line 2, in read
OSError: b
Traceback (most recent call last):
  File "z.py", line 3, in read
KeyError: 'c'
"""


def chained_error() -> Exception:
    """A MONAI-like chain: RuntimeError("applying transform <...>") raised from the real cause."""
    try:
        try:
            raise OSError("unexpected end of data\n  in gzip stream")
        except OSError as cause:
            raise RuntimeError(
                "applying transform <monai.transforms.io.dictionary.LoadImaged object at 0x7f>"
            ) from cause
    except RuntimeError as exc:
        return exc


class TestDescribeException(unittest.TestCase):
    @parameterized.expand(
        [
            [ValueError("bad value"), "ValueError: bad value"],
            [KeyError("image"), "KeyError: 'image'"],
            [RuntimeError(""), "RuntimeError: (no message)"],
            [chained_error(), "LoadImaged: OSError: unexpected end of data in gzip stream"],
            [
                RuntimeError(READER_TRACEBACKS),
                "RuntimeError: LoadImage cannot find a suitable reader. (OSError: b; KeyError: 'c')",
            ],
        ]
    )
    def test_one_line(self, exc, expected):
        self.assertEqual(describe_exception(exc), expected)

    def test_truncated(self):
        line = describe_exception(ValueError("x" * 1000), max_chars=50)
        self.assertEqual(len(line), 50)
        self.assertTrue(line.endswith("..."))

    def test_record_from_path(self):
        record = error_record("/data/ct_01.nii.gz", ValueError("boom"))
        self.assertEqual(
            record, {"case": "ct_01", "image": "/data/ct_01.nii.gz", "error": "/data/ct_01.nii.gz: ValueError: boom"}
        )
