"""bundle.io.arguments: the command-line forms of a value, each turned into the one the bundle's functions take."""

from __future__ import annotations

import unittest

from parameterized import parameterized

from bundle.io.arguments import comma_tuple, int_list, value_pair

PAIRS = [("3-6", (3.0, 6.0)), ("3,30", (3.0, 30.0)), ("2.5-40", (2.5, 40.0)), (4, (4, 4)), (2.5, (2.5, 2.5)),
         ((3, 6), (3, 6)), ([1, 2], (1, 2))]


class TestArguments(unittest.TestCase):
    @parameterized.expand(PAIRS)
    def test_value_pair(self, value, expected):
        self.assertEqual(value_pair(value, "lesions_per_case"), expected)

    @parameterized.expand([("3-6-9",), ("3",), ((1, 2, 3),), (None,)])
    def test_value_pair_ill_arg(self, value):
        with self.assertRaisesRegex(ValueError, "lesions_per_case must"):
            value_pair(value, "lesions_per_case")

    def test_comma_tuple(self):
        self.assertEqual(comma_tuple("pneumonia,brain_tumor"), ("pneumonia", "brain_tumor"))
        self.assertEqual(comma_tuple("resnet18,"), ("resnet18",))
        self.assertEqual(comma_tuple(["a", "b"]), ("a", "b"))

    def test_int_list(self):
        self.assertEqual(int_list(2), [2])
        self.assertEqual(int_list([1, 2]), [1, 2])
        self.assertIsNone(int_list(None))


if __name__ == "__main__":
    unittest.main()
