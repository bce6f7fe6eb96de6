from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import tempfile
import unittest
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from monai.data import DataLoader
from monai.inferers import SimpleInferer, SlidingWindowInferer
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Orientationd, ScaleIntensityRanged, Spacingd
from parameterized import parameterized
from PIL import Image

from bundle.data.dataset import SafeDataset
from bundle.engines import LesionInferenceEvaluator

SHAPE = (20, 22, 18)
# input geometry: LPS-like (x and y flipped), anisotropic 1.5 x 1.5 x 2 mm, with an offset
AFFINE = np.array([[-1.5, 0, 0, 40.0], [0, -1.5, 0, 30.0], [0, 0, 2.0, -20.0], [0, 0, 0, 1]])
BLOB_CENTER = np.array([7.0, 13.0, 9.0])  # voxel indices of the input (nibabel order)
BLOB_RADIUS_MM = 5.0


class BrightNet(torch.nn.Module):
    """Toy segmentation net: foreground logit 40 * (x - 0.5), background 0, so bright voxels are lesion."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(x), 40.0 * (x - 0.5)], dim=1)  # (B, 2, *spatial)


class RoutedStub(SimpleInferer):
    """A stand-in for a routed inferer: exposes last_stats and last_tier_map (all medium), fails on request."""

    def __init__(self, fail_on_call: int | None = None) -> None:
        super().__init__()
        self.fail_on_call = fail_on_call
        self.calls = 0

    def __call__(self, inputs: torch.Tensor, network: torch.nn.Module, *args, **kwargs) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise MemoryError("simulated out of memory")
        self.last_stats = {"windows": [{"tier": 2}, {"tier": 1}, {"tier": 0}, {"tier": 0}], "skipped_fraction": 0.5}
        self.last_tier_map = torch.ones(inputs.shape[2:], dtype=torch.uint8)
        return super().__call__(inputs, network, *args, **kwargs)


def preprocessing() -> Compose:
    return Compose(
        [
            LoadImaged(keys="image", image_only=False),
            EnsureChannelFirstd(keys="image"),
            Orientationd(keys="image", axcodes="RAS"),
            Spacingd(keys="image", pixdim=(1.0, 1.0, 1.0), mode="bilinear"),
            ScaleIntensityRanged(keys="image", a_min=-1000, a_max=400, b_min=0.0, b_max=1.0, clip=True),
        ]
    )


class TestLesionInferenceEvaluator(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        root = Path(self.tmp.name)
        self.data_dir, self.out = root / "data", root / "out"
        self.data_dir.mkdir()
        grid = np.stack(np.meshgrid(*[np.arange(s) for s in SHAPE], indexing="ij"), -1)
        dist = np.linalg.norm((grid - BLOB_CENTER) @ AFFINE[:3, :3].T, axis=-1)
        hu = np.where(dist <= BLOB_RADIUS_MM, 200.0, -900.0).astype(np.float32)
        for name in ("a", "c"):
            nib.save(nib.Nifti1Image(hu, AFFINE), str(self.data_dir / f"{name}.nii.gz"))
        (self.data_dir / "b.nii.gz").write_bytes(b"not a nifti file")
        self.datalist = [{"image": str(self.data_dir / f"{n}.nii.gz"), "case": n} for n in ("a", "b", "c")]

    def tearDown(self):
        self.tmp.cleanup()

    def evaluator(self, inferer=None, **kwargs) -> LesionInferenceEvaluator:
        pre = preprocessing()
        loader = DataLoader(SafeDataset(self.datalist, pre), batch_size=1, num_workers=0)
        args = {"dataset_dir": self.data_dir, "lesion_kwargs": {"min_diameter_mm": 3.0}, "progress": False, **kwargs}
        return LesionInferenceEvaluator("cpu", loader, BrightNet(), self.out, pre, inferer, **args)

    @parameterized.expand(
        [[SimpleInferer(), None], [SlidingWindowInferer(roi_size=(16, 16, 16), overlap=0.25), None], [RoutedStub(), 4]]
    )
    def test_three_cases_one_corrupt(self, inferer, n_windows):
        evaluator = self.evaluator(inferer)
        with self.assertLogs("bundle.engines.evaluator", level=logging.INFO) as logs:
            evaluator.run()
        self.assertTrue(any("[2/3] b: failed after" in line and "b.nii.gz" in line for line in logs.output))
        self.assertTrue(any("2 done, 1 failed" in line for line in logs.output))
        for case in ("a", "c"):
            files = sorted(p.name for p in (self.out / case).iterdir())
            self.assertEqual(files, ["lesions.json", "meta.json", "overlay.png", "seg.nii.gz"])
            doc = json.loads((self.out / case / "lesions.json").read_text())
            self.assertEqual(doc["case"], case)
            (lesion,) = doc["lesions"]
            # voxel indices in the input's own grid, world coordinates through the input's affine
            np.testing.assert_allclose(lesion["center_voxel"], BLOB_CENTER, atol=0.5)
            np.testing.assert_allclose(lesion["center_mm"], (AFFINE @ [*lesion["center_voxel"], 1])[:3], atol=0.01)
            np.testing.assert_allclose(lesion["center_mm"], (AFFINE @ [*BLOB_CENTER, 1])[:3], atol=1.0)
            self.assertAlmostEqual(lesion["diameter_mm"], 2 * BLOB_RADIUS_MM, delta=1.5)
            self.assertEqual(lesion["tier"], "high" if n_windows is None else "medium")
            seg = nib.load(str(self.out / case / "seg.nii.gz"))
            self.assertEqual(seg.shape, SHAPE)
            np.testing.assert_allclose(seg.affine, AFFINE, atol=1e-5)
            self.assertEqual(int(np.asarray(seg.dataobj)[tuple(BLOB_CENTER.astype(int))]), 1)
            with Image.open(self.out / case / "overlay.png") as im:
                self.assertEqual(im.format, "PNG")
        self.assertFalse((self.out / "b").exists())
        summary = json.loads((self.out / "summary.json").read_text())
        self.assertEqual(summary["cases_done"], ["a", "c"])
        self.assertEqual([f["case"] for f in summary["cases_failed"]], ["b"])
        self.assertTrue(summary["cases_failed"][0]["error"].startswith(str(self.data_dir / "b.nii.gz")))
        self.assertEqual(evaluator.failed_cases, summary["cases_failed"])
        self.assertEqual(summary["per_case"]["a"]["n_lesions"], 1)
        self.assertEqual(summary["totals"]["n_lesions"], 2)
        # where the case's time went: loading, network, lesions, outputs, adding up to the case's seconds
        stages = summary["per_case"]["a"]["stage_seconds"]
        self.assertEqual(list(stages), ["load_preprocess", "network", "lesions", "outputs"])
        self.assertTrue(all(v >= 0 for v in stages.values()))
        self.assertAlmostEqual(sum(stages.values()), summary["per_case"]["a"]["seconds"], delta=0.01)
        if n_windows is None:
            self.assertIsNone(summary["per_case"]["a"]["windows"]["high"])
        else:
            self.assertEqual(summary["per_case"]["a"]["windows"], {"high": 1, "medium": 1, "low": 2})
            self.assertEqual(summary["totals"]["skipped_fraction"], 0.5)

    def test_html_report_and_summary_csv(self):
        self.evaluator(html_report=True, software_version="7.7").run()
        for case in ("a", "c"):
            page = (self.out / case / "report.html").read_text()
            self.assertIn(f"<h1>{case}: 1 lesion found</h1>", page)
            self.assertIn("Small-lesion bundle 7.7", page)
            self.assertEqual(page.count('src="data:image/png;base64,'), 1)
            self.assertRegex(page, r"\d+\.\d s from reading the input to the lesion list")
        with open(self.out / "summary.csv", newline="") as f:
            rows = {r["case"]: r for r in csv.DictReader(f)}
        self.assertEqual({c: rows[c]["status"] for c in rows}, {"a": "done", "b": "failed", "c": "done"})
        self.assertEqual(rows["a"]["n_lesions"], "1")
        self.assertAlmostEqual(float(rows["a"]["largest_diameter_mm"]), 2 * BLOB_RADIUS_MM, delta=1.5)
        self.assertIn("b.nii.gz", rows["b"]["error"])

    @parameterized.expand([[0.0, 1], [1.0, 0]])
    def test_rescorer_keeps_or_drops_lesions_and_the_label_map_follows(self, new_score, n_kept):
        seen = []

        def rescorer(lesions, image, prob, affine):  # a stand-in for CandidateRescorer
            seen.append((tuple(image.shape), tuple(prob.shape), len(lesions)))
            return [{**les, "score": 1.0 - new_score} for les in lesions]

        self.evaluator(rescorer=rescorer, rescore_threshold=0.5).run()
        self.assertEqual(len(seen), 2)  # the two readable cases, image and probability on the same grid
        self.assertEqual(seen[0][0], seen[0][1])
        for case in ("a", "c"):
            doc = json.loads((self.out / case / "lesions.json").read_text())
            self.assertEqual(len(doc["lesions"]), n_kept)
            seg = np.asarray(nib.load(str(self.out / case / "seg.nii.gz")).dataobj)
            self.assertEqual(int(seg.max()), n_kept)  # a dropped lesion leaves no label behind

    def test_one_result_line_per_case(self):
        """Each case ends with one line (status, lesions, seconds, windows skipped), numbered; then the summary."""
        with self.assertLogs("bundle.engines.evaluator", level=logging.INFO) as logs:
            self.evaluator(RoutedStub()).run()
        lines = [r.getMessage() for r in logs.records]
        self.assertEqual(len(lines), 4, lines)
        self.assertRegex(lines[0], r"^\[1/3\] a: done, 1 lesion in \d+\.\d s, 50 % of windows skipped$")
        self.assertRegex(lines[1], r"^\[2/3\] b: failed after \d+\.\d s: .*b\.nii\.gz")
        self.assertRegex(lines[2], r"^\[3/3\] c: done, 1 lesion in \d+\.\d s, 50 % of windows skipped$")
        self.assertEqual([r.levelno for r in logs.records], [logging.INFO, logging.WARNING, logging.INFO, logging.INFO])
        self.assertIn("2 done, 1 failed, 0 skipped of 3 cases", lines[3])
        for line in lines:
            self.assertNotIn("\n", line)

    def test_no_bar_without_a_terminal(self):
        """progress=True draws nothing into a log file, pipe or CI console (stderr not a terminal), and ignite's
        epoch lines are silenced: the result lines are the record."""
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), self.assertLogs(level=logging.INFO) as logs:
            self.evaluator(SimpleInferer(), progress=True).run()
        self.assertEqual(stderr.getvalue(), "")
        self.assertFalse(any(r.name.startswith("ignite") for r in logs.records), logs.output)

    def test_ignored_entries_in_summary(self):
        ignored = [{"path": str(self.data_dir / "empty"), "reason": "empty folder (no files, no subfolders)"}]
        with self.assertLogs("bundle.engines.evaluator", level=logging.INFO) as logs:
            self.evaluator(SimpleInferer(), ignored_entries=ignored).run()
        summary = json.loads((self.out / "summary.json").read_text())
        self.assertEqual((summary["entries_ignored"], summary["totals"]["ignored"]), (ignored, 1))
        self.assertIn("1 input entries ignored", logs.output[-1])

    def test_progress_flag_of_wrong_type(self):
        with self.assertRaisesRegex(TypeError, "progress must be True or False, got progress='no'"):
            self.evaluator(progress="no")

    def test_failure_while_inferring_and_raise_on_failure(self):
        evaluator = self.evaluator(RoutedStub(fail_on_call=2), raise_on_failure=True)  # a is call 1, c call 2
        with self.assertRaisesRegex(RuntimeError, r"2 of 3 cases failed: b \(.*\); c \(.*MemoryError: simulated"):
            evaluator.run()
        summary = json.loads((self.out / "summary.json").read_text())  # written before raising
        self.assertEqual(summary["cases_done"], ["a"])
        self.assertEqual([f["case"] for f in evaluator.failed_cases], ["b", "c"])
        self.assertFalse((self.out / "c").exists())

    def test_rerun_policy(self):
        self.evaluator(SimpleInferer()).run()
        first = (self.out / "a" / "lesions.json").stat().st_mtime_ns
        evaluator = self.evaluator(SimpleInferer(), overwrite=False)
        evaluator.run()
        summary = json.loads((self.out / "summary.json").read_text())
        self.assertEqual(summary["cases_skipped"], ["a", "c"])
        self.assertEqual((self.out / "a" / "lesions.json").stat().st_mtime_ns, first)
        self.evaluator(SimpleInferer(), overwrite=True).run()
        self.assertNotEqual((self.out / "a" / "lesions.json").stat().st_mtime_ns, first)

    def test_unbatched_dataset(self):
        pre = preprocessing()
        cases = (item for item in SafeDataset(self.datalist, pre))  # lazy, unbatched case dicts
        evaluator = LesionInferenceEvaluator("cpu", cases, BrightNet(), self.out, pre, epoch_length=3)
        evaluator.run()
        summary = json.loads((self.out / "summary.json").read_text())
        self.assertEqual((summary["cases_done"], evaluator.failed_cases[0]["case"]), (["a", "c"], "b"))

    def test_no_lesion_case(self):
        nib.save(nib.Nifti1Image(np.full(SHAPE, -900, np.float32), AFFINE), self.datalist[0]["image"])
        self.evaluator(SimpleInferer()).run()
        self.assertEqual(json.loads((self.out / "a" / "lesions.json").read_text())["lesions"], [])
        self.assertTrue((self.out / "a" / "overlay.png").is_file())

    @parameterized.expand(
        [
            [{"output_dir_inside": True}],
            [{"foreground_channel": -1}],
            [{"lesion_kwargs": {"threshold": 0.0}}],
            [{"rescore_threshold": 2.0}],
            [{"preprocessing": "Compose"}],
        ]
    )
    def test_ill_arg(self, kwargs):
        args = {"device": "cpu", "val_data_loader": [], "network": BrightNet(), "output_dir": self.out}
        if kwargs.pop("output_dir_inside", False):
            args.update(output_dir=self.data_dir / "out", dataset_dir=self.data_dir)
        with self.assertRaises(ValueError):
            LesionInferenceEvaluator(**args, **kwargs)


if __name__ == "__main__":
    unittest.main()
