"""What the configs define once, or check here for divergence.

- ``network_def`` is written in ``configs/train.json`` and ``configs/inference.json`` (each config is run on its
  own, so neither can read the other): both must build the same architecture.
- The lung-envelope mask (``LungCandidateMaskd``) is defined by ``lung_mask`` in ``configs/train.json`` (used by
  ``configs/evaluate.json`` and the experiments) and, for the standalone inference, in ``configs/inference.json``:
  the two must be equal, and no other config may define its own.
- The lesion-balanced crop sampling (``LesionBalancedWeightd`` + ``RandWeightedCropd`` + ``DeleteItemsd``) is
  ``weighted_sampling`` of ``configs/train.json``; the variants select it (``"train#sampling": "@weighted_sampling"``)
  and set its ids. The parsed transforms must keep the values each recipe was run with: the recipes whose weights or
  recorded results predate the folding onto usable centres (0.6.10) turn it off (``spatial_size`` None).
"""

from __future__ import annotations

import inspect
import json
import unittest
from pathlib import Path

from monai.bundle import ConfigParser
from parameterized import parameterized

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
EXPERIMENTS = ROOT / "bundle" / "experiments" / "configs"

# keys that only train.json sets and that do not change the architecture (dropout of the attention branch)
TRAINING_ONLY_KEYS = {"ca_drop_prob"}

# the crop sampling of each recipe, as it was written out in full in each config before it was defined once:
# (config files, [(transform, {attribute: value})])
_CROP = ("RandWeightedCropd", {"keys": ("image", "label"), "w_key": "sample_weight", "spatial_size": [64, 64, 32],
                               "num_samples": 2})
_LUNG = ("LungCandidateMaskd", {"keys": ("image",), "mask_key": "lung_mask", "a_min": -1000.0, "a_max": 400.0,
                                "margin_mm": 5.0, "empty_means_all": True})
SAMPLING = [
    (
        "nodule_mode_train",
        [CONFIGS / "train.json", CONFIGS / "variants" / "nodule_mode_train.json"],
        [
            ("LesionBalancedWeightd", {"keys": ("label",), "weight_key": "sample_weight", "mask_key": "image",
                                       "pos_mass": 0.5, "neg_mask_mass": 0.5, "neg_any_mass": 0.0,
                                       "mask_threshold": 0.05,
                                       "spatial_size": None}),  # models/nodule_mode was trained before the fold
            _CROP,
            ("DeleteItemsd", {"keys": ("sample_weight",)}),
        ],
    ),
    (
        "mri_train",
        [CONFIGS / "train.json", CONFIGS / "variants" / "mri_train.json"],
        [
            ("LesionBalancedWeightd", {"keys": ("label",), "weight_key": "sample_weight", "mask_key": None,
                                       "pos_mass": 0.5, "neg_mask_mass": 0.0, "neg_any_mass": 0.5,
                                       "mask_threshold": 0.0,
                                       "spatial_size": [64, 64, 32]}),
            _CROP,
            ("DeleteItemsd", {"keys": ("sample_weight",)}),
        ],
    ),
    (
        "balanced_sampling",
        [CONFIGS / "train.json", EXPERIMENTS / "balanced_sampling.json"],
        [
            _LUNG,
            ("LesionBalancedWeightd", {"keys": ("label",), "weight_key": "sample_weight", "mask_key": "lung_mask",
                                       "pos_mass": 0.5, "neg_mask_mass": 0.35, "neg_any_mass": 0.15,
                                       "mask_threshold": 0.0,
                                       "spatial_size": None}),  # its recorded runs predate the fold
            _CROP,
            ("DeleteItemsd", {"keys": ("sample_weight", "lung_mask")}),
        ],
    ),
]


def parsed(files: list[Path], key: str):
    parser = ConfigParser()
    parser.read_config([str(f) for f in files])
    parser["bundle_root"] = str(ROOT)
    return parser.get_parsed_content(key)


def parameters(transform) -> dict:
    """The constructor values of a sampling transform, read back from the instance."""
    name = type(transform).__name__
    values: dict = {"keys": tuple(transform.keys)}
    if name == "LungCandidateMaskd":
        m = transform.masker
        values.update(mask_key=transform.mask_key, a_min=m.a_min, a_max=m.a_max, margin_mm=m.margin_mm,
                      empty_means_all=m.empty_means_all)
    elif name == "LesionBalancedWeightd":
        w = transform.weigher
        values.update(weight_key=transform.weight_key, mask_key=transform.mask_key, pos_mass=w.pos_mass,
                      neg_mask_mass=w.neg_mask_mass, neg_any_mass=w.neg_any_mass, mask_threshold=w.mask_threshold,
                      spatial_size=None if w.spatial_size is None else list(w.spatial_size))
    elif name == "RandWeightedCropd":
        values.update(w_key=transform.w_key, spatial_size=list(transform.cropper.spatial_size),
                      num_samples=transform.cropper.num_samples)
    return values


def config_files() -> list[Path]:
    return sorted(CONFIGS.rglob("*.json")) + sorted(EXPERIMENTS.rglob("*.json"))


class TestNetworkDefinition(unittest.TestCase):
    def test_train_and_inference_build_the_same_architecture(self):
        train_def = json.loads((CONFIGS / "train.json").read_text())["network_def"]
        infer_def = json.loads((CONFIGS / "inference.json").read_text())["network_def"]
        self.assertEqual(train_def["_target_"], infer_def["_target_"])
        train_net = parsed([CONFIGS / "train.json"], "network_def")
        infer_net = parsed([CONFIGS / "inference.json"], "network_def")
        self.assertIs(type(train_net), type(infer_net))
        train_state, infer_state = train_net.state_dict(), infer_net.state_dict()
        self.assertEqual(list(train_state), list(infer_state))
        for key in train_state:
            self.assertEqual(train_state[key].shape, infer_state[key].shape, key)
        # every key both set has the same value; a key only one sets is the other's constructor default
        defaults = {k: p.default for k, p in inspect.signature(type(train_net).__init__).parameters.items()}
        for key in (set(train_def) | set(infer_def)) - {"_target_"}:
            if key in train_def and key in infer_def:
                self.assertEqual(train_def[key], infer_def[key], key)
            elif key not in TRAINING_ONLY_KEYS:
                value = train_def.get(key, infer_def.get(key))
                default = defaults[key]
                self.assertEqual(list(default) if isinstance(default, tuple) else default, value, key)


class TestLungMaskDefinition(unittest.TestCase):
    def test_inference_lung_mask_equals_the_train_one(self):
        train = json.loads((CONFIGS / "train.json").read_text())
        inference = json.loads((CONFIGS / "inference.json").read_text())
        self.assertEqual(inference["lung_mask"], train["lung_mask"])
        for key in ("a_min", "a_max"):  # the values its references resolve to
            self.assertEqual(inference[key], train[key], key)
        self.assertEqual(parameters(parsed([CONFIGS / "inference.json"], "lung_mask")),
                         parameters(parsed([CONFIGS / "train.json"], "lung_mask")))

    def test_evaluation_uses_the_one_definition(self):
        transforms = parsed([CONFIGS / "train.json", CONFIGS / "evaluate.json"], "validate#preprocessing").transforms
        self.assertEqual(type(transforms[-1]).__name__, "LungCandidateMaskd")
        self.assertEqual(parameters(transforms[-1]), dict(_LUNG[1]))

    def test_no_other_config_defines_it(self):
        defining = [p.relative_to(ROOT).as_posix() for p in config_files() if "LungCandidateMaskd" in p.read_text()]
        self.assertEqual(sorted(defining), ["configs/inference.json", "configs/train.json"])


class TestWeightedSampling(unittest.TestCase):
    @parameterized.expand(SAMPLING)
    def test_recipe_keeps_its_values(self, _, files, expected):
        sampling = parsed(files, "train#sampling")
        self.assertEqual([type(t).__name__ for t in sampling], [name for name, _ in expected])
        for transform, (name, values) in zip(sampling, expected):
            self.assertEqual(parameters(transform), values, name)

    def test_no_other_config_defines_it(self):
        for name in ("LesionBalancedWeightd", "RandWeightedCropd"):
            defining = [p.relative_to(ROOT).as_posix() for p in config_files() if name in p.read_text()]
            self.assertEqual(defining, ["configs/train.json"], name)


if __name__ == "__main__":
    unittest.main()
