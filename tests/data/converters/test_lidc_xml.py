from __future__ import annotations

import tempfile
import unittest
from pathlib import Path

import numpy as np

from bundle.data.converters.lidc_xml import read_lidc_xml
from tests.data.converters.lidc_fixtures import N_SLICES, lidc_xml, nodule_xml, standard_sessions


class TestReadLidcXml(unittest.TestCase):
    def test_read_lidc_xml(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "a.xml"
            path.write_text(lidc_xml("1.2.3", standard_sessions([f"u{k}" for k in range(N_SLICES)])))
            reading = read_lidc_xml(path)
            self.assertEqual(reading.series_uid, "1.2.3")
            self.assertEqual(reading.reader_ids, ["reader0", "reader1", "reader2", "reader3"])
            self.assertEqual([n.nodule_id for n in reading.nodules], ["A0", "small", "A1", "A2", "B3"])
            self.assertEqual(reading.nodules[0].rois[0].sop_uid, "u2")
            self.assertAlmostEqual(reading.nodules[0].rois[0].z_position, -97.0)
            self.assertIsNone(reading.nodules[3].rois[0].sop_uid)
            np.testing.assert_array_equal(reading.nodules[1].rois[0].points, [[5, 27]])
            for text, message in [
                ("<IdriReadMessage/>", "root element must be LidcReadMessage"),
                ('<LidcReadMessage xmlns="http://www.nih.gov"/>', "no readingSession"),
                (lidc_xml("1", [[nodule_xml("n", ["<roi><imageZposition>1</imageZposition></roi>"])]]), "no edgeMap"),
                (lidc_xml("1", [[nodule_xml("n", ["<roi><edgeMap><xCoord>1</xCoord><yCoord>1</yCoord></edgeMap>"
                                                  "</roi>"])]]),
                 "neither imageSOP_UID nor imageZposition"),
                (lidc_xml("1", [[nodule_xml("n", ["<roi><imageZposition>1</imageZposition><edgeMap><xCoord>a</xCoord>"
                                                  "<yCoord>1</yCoord></edgeMap></roi>"])]]), "bad coordinate"),
            ]:
                path.write_text(text)
                with self.assertRaisesRegex(ValueError, f"^{path}: .*{message}"):
                    read_lidc_xml(path)


if __name__ == "__main__":
    unittest.main()
