"""Registry-driven contract test (timm ``tests/test_models.py`` style): every network in ``bundle.networks.__all__``
runs forward and backward without NaN, gives every parameter a gradient, keeps the spatial shape, and scripts."""

from __future__ import annotations

import unittest

import torch
from monai.networks import eval_mode
from parameterized import parameterized

import bundle.networks

# name -> list of (kwargs, input_shape, output channels); small configs, 2D and 3D, odd sizes
CONTRACT_CASES: dict[str, list[tuple[dict, tuple[int, ...], int]]] = {
    "GhostModule": [
        ({"spatial_dims": 2, "in_channels": 3, "out_channels": 5}, (2, 3, 11, 12), 5),
        ({"spatial_dims": 3, "in_channels": 2, "out_channels": 4, "dw_size": 1}, (2, 2, 7, 8, 9), 4),
    ],
    "CoordinateAttention": [
        ({"spatial_dims": 2, "in_channels": 8}, (2, 8, 11, 12), 8),
        ({"spatial_dims": 3, "in_channels": 8}, (2, 8, 7, 8, 9), 8),
    ],
    "GhostCAUNet": [
        ({"spatial_dims": 2, "features": (4, 8, 16), "ghost_levels": (1,), "ca_stages": (2,)}, (2, 1, 17, 18), 2),
        ({"spatial_dims": 3, "in_channels": 2, "out_channels": 3, "features": (4, 8, 16), "ghost_levels": (0, 2),
          "ca_stages": (1, 2)}, (2, 2, 9, 10, 11), 3),
    ],
}
CASES = [[name, *case] for name in bundle.networks.__all__ for case in CONTRACT_CASES.get(name, [])]


class TestAllNetworks(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        # tiny tensors on a shared 2-core machine: one thread avoids OpenMP oversubscription stalls (seconds per op)
        cls._num_threads = torch.get_num_threads()
        torch.set_num_threads(1)

    @classmethod
    def tearDownClass(cls) -> None:
        torch.set_num_threads(cls._num_threads)

    def test_registry_covered(self):
        missing = sorted(set(bundle.networks.__all__) - set(CONTRACT_CASES))
        self.assertEqual(missing, [], f"add contract cases for {missing}")
        for name in bundle.networks.__all__:
            self.assertTrue(issubclass(getattr(bundle.networks, name), torch.nn.Module), name)

    @parameterized.expand(CASES)
    def test_forward_backward(self, name, kwargs, input_shape, out_channels):
        torch.manual_seed(0)
        net = getattr(bundle.networks, name)(**kwargs).train()
        out = net(torch.randn(input_shape))
        self.assertEqual(tuple(out.shape), (input_shape[0], out_channels, *input_shape[2:]))
        self.assertFalse(torch.isnan(out).any(), f"{name} forward gave NaN")
        out.mean().backward()
        for pname, p in net.named_parameters():
            self.assertIsNotNone(p.grad, f"{name}: no gradient for {pname}")
            self.assertTrue(torch.isfinite(p.grad).all(), f"{name}: non-finite gradient for {pname}")

    @parameterized.expand(CASES)
    def test_script(self, name, kwargs, input_shape, out_channels):
        net = getattr(bundle.networks, name)(**kwargs)
        x = torch.randn(input_shape)
        with eval_mode(net):
            torch.testing.assert_close(torch.jit.script(net)(x), net(x), atol=1e-5, rtol=1e-5)


if __name__ == "__main__":
    unittest.main()
