from __future__ import annotations

import json
import logging
import tempfile
import unittest
from pathlib import Path

import torch
from monai.bundle import ConfigWorkflow
from parameterized import parameterized

from bundle.engines.pretrained import load_pretrained
from bundle.networks import GhostCAUNet

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
# a small 2D GhostCAUNet: every kind of tensor of the real one (Ghost, CA, norm buffers, screening buffers)
NET_KWARGS = {"spatial_dims": 2, "features": (4, 8, 16), "ghost_levels": (1,), "ca_stages": (1,)}
HEAD = ["head.bias", "head.weight"]


def make_net(seed: int, **kwargs) -> GhostCAUNet:
    """A network whose every parameter and float buffer is drawn from a generator seeded with ``seed``."""
    net = GhostCAUNet(**{**NET_KWARGS, **kwargs})
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in net.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=gen))
    return net


def assert_same(case: unittest.TestCase, a: dict, b: dict, names) -> None:
    for name in names:
        case.assertTrue(torch.equal(a[name], b[name]), name)


# how the state dict is stored in the file, and the key argument to find it
NESTING_CASES = [
    ("raw", lambda sd: sd, None),
    ("model", lambda sd: {"model": sd, "optimizer": {"state": {}, "param_groups": []}}, None),
    ("state_dict", lambda sd: {"state_dict": sd, "epoch": 3}, None),
    ("custom_key", lambda sd: {"ema_weights": sd, "step": 10}, "ema_weights"),
    ("ddp_prefix", lambda sd: {"module." + k: v for k, v in sd.items()}, None),
    ("ddp_prefix_in_model", lambda sd: {"model": {"module." + k: v for k, v in sd.items()}}, None),
]


class TestLoadPretrained(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.tmp = Path(self._tmp.name)

    def tearDown(self):
        self._tmp.cleanup()

    def save(self, obj, name: str = "ckpt.pt") -> Path:
        path = self.tmp / name
        torch.save(obj, path)
        return path

    def test_full_match(self):
        source, target = make_net(1), make_net(2)
        path = self.save(source.state_dict())
        with self.assertLogs("bundle.engines.pretrained", level="INFO") as logs:
            report = load_pretrained(target, path)
        expected = source.state_dict()
        self.assertEqual(report, {"matched": len(expected), "missing": [], "unexpected": [], "shape_mismatch": []})
        assert_same(self, target.state_dict(), expected, expected)
        self.assertIn(str(path), "\n".join(logs.output))
        self.assertEqual(load_pretrained(target, path, strict=True)["matched"], len(expected))

    def test_partial_match_other_head(self):
        source, target = make_net(1, out_channels=3), make_net(2, out_channels=2)
        head_before = {k: target.state_dict()[k].clone() for k in HEAD}
        path = self.save(source.state_dict())
        with self.assertLogs("bundle.engines.pretrained", level="WARNING") as logs:
            report = load_pretrained(target, path)
        self.assertEqual(report["shape_mismatch"], HEAD)
        self.assertEqual(report["missing"], [])
        self.assertEqual(report["unexpected"], [])
        body = [k for k in source.state_dict() if k not in HEAD]
        self.assertEqual(report["matched"], len(body))
        assert_same(self, target.state_dict(), source.state_dict(), body)
        assert_same(self, target.state_dict(), head_before, HEAD)  # the new head keeps its own initialisation
        self.assertTrue(any("head.weight" in line and "(3, 4, 1, 1)" in line for line in logs.output), logs.output)

    def test_missing_and_unexpected(self):
        source, target = make_net(1), make_net(2)
        state = dict(source.state_dict())
        del state["prototype"]
        state["extra.weight"] = torch.ones(2)
        report = load_pretrained(target, self.save(state))
        self.assertEqual(report["missing"], ["prototype"])
        self.assertEqual(report["unexpected"], ["extra.weight"])
        self.assertEqual(report["matched"], len(state) - 1)

    @parameterized.expand(NESTING_CASES)
    def test_nested(self, _, wrap, key):
        source, target = make_net(1), make_net(2)
        report = load_pretrained(target, self.save(wrap(source.state_dict())), key=key)
        self.assertEqual(report["matched"], len(source.state_dict()))
        assert_same(self, target.state_dict(), source.state_dict(), source.state_dict())

    def test_wrapped_network(self):
        source, target = make_net(1), make_net(2)
        report = load_pretrained(torch.nn.DataParallel(target), self.save(source.state_dict()))
        self.assertEqual(report["matched"], len(source.state_dict()))
        assert_same(self, target.state_dict(), source.state_dict(), source.state_dict())

    def test_wrong_architecture(self):
        target = make_net(2)
        before = {k: v.clone() for k, v in target.state_dict().items()}
        path = self.save(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU()).state_dict())
        with self.assertRaisesRegex(ValueError, "does not fit the network") as ctx:
            load_pretrained(target, path)
        message = str(ctx.exception)
        self.assertIn(str(path), message)
        self.assertNotIn("\n", message)
        assert_same(self, target.state_dict(), before, before)
        report = load_pretrained(target, path, allow_no_match=True)  # reported, not raised, and nothing copied
        self.assertEqual(report["matched"], 0)
        self.assertEqual(report["unexpected"], ["0.bias", "0.weight"])
        assert_same(self, target.state_dict(), before, before)

    def test_strict_rejects_partial_match(self):
        source, target = make_net(1, out_channels=3), make_net(2)
        before = {k: v.clone() for k, v in target.state_dict().items()}
        path = self.save(source.state_dict())
        with self.assertRaisesRegex(ValueError, "strict=True.*head.bias"):
            load_pretrained(target, path, strict=True)
        assert_same(self, target.state_dict(), before, before)  # nothing copied

    @parameterized.expand([
        ("garbage", b"this is not a checkpoint"),
        ("empty", b""),
        ("truncated", None),
    ])  # fmt: skip
    def test_corrupt_file(self, name, content):
        path = self.tmp / f"{name}.pt"
        if content is None:
            full = self.save(make_net(1).state_dict(), "full.pt").read_bytes()
            content = full[: len(full) // 2]
        path.write_bytes(content)
        with self.assertRaisesRegex(ValueError, "not a readable torch.save file") as ctx:
            load_pretrained(make_net(2), path)
        self.assertIn(str(path), str(ctx.exception))
        self.assertNotIn("\n", str(ctx.exception))

    def test_ill_arg(self):
        target = make_net(2)
        with self.assertRaisesRegex(ValueError, "no such file"):
            load_pretrained(target, self.tmp / "absent.pt")
        with self.assertRaisesRegex(ValueError, "must hold a state dict"):
            load_pretrained(target, self.save(torch.zeros(3)))
        with self.assertRaisesRegex(ValueError, "holds no state dict"):
            load_pretrained(target, self.save({"epoch": 3, "config": {"lr": 0.1}}))
        with self.assertRaisesRegex(ValueError, "key=.*weights"):
            load_pretrained(target, self.save({"model": target.state_dict()}), key="weights")


class TestTrainConfigPretrained(unittest.TestCase):
    """``configs/train.json``'s ``pretrained_ckpt``: loaded in ``initialize`` when set, ignored when empty."""

    def initialize(self, tmp: Path, pretrained_ckpt: str) -> torch.nn.Module:
        workflow = ConfigWorkflow(
            config_file=str(CONFIGS / "train.json"),
            meta_file=str(CONFIGS / "metadata.json"),
            logging_file=str(CONFIGS / "logging.conf"),
            workflow_type="train",
            bundle_root=str(ROOT),
            dataset_dir=str(tmp),
            output_dir=str(tmp / "run"),
            ckpt_dir=str(tmp / "models"),
            pretrained_ckpt=pretrained_ckpt,
        )
        workflow.initialize()
        return workflow.parser.get_parsed_content("network")

    def test_pretrained_ckpt(self):
        network_def = json.loads((CONFIGS / "train.json").read_text())["network_def"]
        kwargs = {k: v for k, v in network_def.items() if k != "_target_"}
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            source = make_net(5, **kwargs)
            path = tmp / "pretrained.pt"
            torch.save({"model": source.state_dict()}, path)
            logging.getLogger("bundle.engines.pretrained").setLevel(logging.INFO)
            network = self.initialize(tmp, str(path))
            expected = source.state_dict()
            self.assertEqual(set(network.state_dict()), set(expected))
            assert_same(self, network.state_dict(), expected, expected)
            # without pretrained_ckpt the network keeps its own initialisation
            network = self.initialize(tmp, "")
            self.assertFalse(torch.equal(network.state_dict()["head.weight"], expected["head.weight"]))


if __name__ == "__main__":
    unittest.main()
