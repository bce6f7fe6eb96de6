"""bundle.engines.rng: the random state round trip, the search for transforms' generators, a resume of an ignite
engine at an epoch boundary, and the load_dict for checkpoints with and without the random state."""

from __future__ import annotations

import random
import tempfile
import unittest
from pathlib import Path

import numpy as np
import torch
from monai.data import DataLoader, Dataset
from monai.handlers import CheckpointLoader, CheckpointSaver
from monai.transforms import Compose, Lambdad, RandAffined, RandCropByPosNegLabeld, RandFlipd, RandGaussianNoised
from ignite.engine import Engine, Events

from bundle.engines import GradientState, RandomState, find_random_states, resume_load_dict


def pipeline() -> Compose:
    return Compose([
        Lambdad("image", lambda x: x * 1.0),
        RandCropByPosNegLabeld(["image", "label"], "label", spatial_size=(4, 4, 4), num_samples=1),
        RandAffined(["image", "label"], prob=1.0, rotate_range=0.3, mode=("bilinear", "nearest")),
        RandFlipd("image", prob=0.5, spatial_axis=0),
    ]).set_random_state(seed=3)


def sample() -> dict[str, torch.Tensor]:
    label = torch.zeros(1, 8, 8, 8)
    label[:, 2:5, 3:6, 1:4] = 1
    return {"image": torch.arange(512.0).reshape(1, 8, 8, 8), "label": label}


def draws(transforms: Compose) -> list[torch.Tensor]:
    """Something from every generator a RandomState covers."""
    out = transforms(sample())[0]["image"].as_tensor()
    return [torch.rand(3), torch.from_numpy(np.random.rand(3)), torch.tensor(random.random()), out]


class TestRoundTrip(unittest.TestCase):
    def test_state_round_trip_repeats_the_next_numbers(self):
        transforms = pipeline()
        rng = RandomState(transforms)
        draws(transforms)  # advance every generator away from its seed
        state = rng.state_dict()
        first = draws(transforms)
        second = draws(transforms)
        self.assertFalse(torch.equal(first[0], second[0]))
        rng.load_state_dict(state)
        for a, b in zip(first, draws(transforms)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)

    def test_state_survives_torch_save_weights_only(self):
        transforms = pipeline()
        rng = RandomState(transforms)
        with tempfile.TemporaryDirectory() as tmp:
            torch.save({"rng": rng.state_dict()}, Path(tmp) / "c.pt")
            first = draws(transforms)
            rng.load_state_dict(torch.load(Path(tmp) / "c.pt", weights_only=True)["rng"])
        for a, b in zip(first, draws(transforms)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)

    def test_nested_generators_are_found_once(self):
        paths = find_random_states(pipeline())
        self.assertIn("transforms.1.cropper", paths)
        self.assertIn("transforms.2.rand_affine.rand_affine_grid", paths)
        self.assertNotIn("transforms.0", paths)  # Lambdad is not random
        self.assertEqual(len({id(r) for r in paths.values()}), len(paths))
        self.assertEqual(find_random_states(None), {})

    def test_other_pipeline_warns_and_keeps_the_rest(self):
        state = RandomState(pipeline()).state_dict()
        other = Compose([RandGaussianNoised("image", prob=1.0)]).set_random_state(seed=1)
        with self.assertLogs("bundle.engines.rng", "WARNING") as logs:
            RandomState(other).load_state_dict(state)
        self.assertIn("transforms.1.cropper", logs.output[0])

    def test_bad_state_is_a_clear_error(self):
        with self.assertRaisesRegex(ValueError, r"lacking \['transforms'\]"):
            RandomState().load_state_dict({k: None for k in ("torch", "cuda", "numpy", "python")})
        with self.assertRaisesRegex(ValueError, "got a list"):
            RandomState().load_state_dict([])


def make_engine(transforms: Compose, seen: list) -> Engine:
    """A trainer stand-in: a shuffling MONAI DataLoader over a randomly transformed dataset, torch noise per step."""
    loader = DataLoader(Dataset([sample() for _ in range(3)], transforms), batch_size=1, shuffle=True)

    def step(engine: Engine, batch: dict) -> None:
        seen.append((engine.state.epoch, batch["image"].as_tensor().sum().item(), torch.rand(1).item()))

    engine = Engine(step)
    engine.state.max_epochs = 4  # as MONAI's Workflow sets it before run
    engine.state.dataloader = loader
    return engine


class TestIgniteResume(unittest.TestCase):
    def test_resume_at_epoch_boundary_continues_the_stream(self):
        with tempfile.TemporaryDirectory() as tmp:
            torch.manual_seed(0)
            transforms, straight = pipeline(), []
            engine = make_engine(transforms, straight)
            saver = CheckpointSaver(tmp, {"trainer": engine, "rng": RandomState(transforms)}, file_prefix="last",
                                    save_interval=1, n_saved=None)
            saver.attach(engine)
            engine.run(engine.state.dataloader, max_epochs=4)

            torch.manual_seed(0)  # a fresh process: same seed, then the checkpoint of epoch 2
            transforms, resumed = pipeline(), []
            engine = make_engine(transforms, resumed)
            path = str(Path(tmp) / "last_checkpoint_epoch=2.pt")
            load_dict = resume_load_dict({"trainer": engine}, {"rng": RandomState(transforms)}, path)
            CheckpointLoader(path, load_dict).attach(engine)
            engine.add_event_handler(Events.STARTED, lambda e: self.assertEqual(e.state.epoch, 2))
            engine.run(engine.state.dataloader, max_epochs=4)
        self.assertEqual([s[0] for s in resumed], [3, 3, 3, 4, 4, 4])
        self.assertEqual(resumed, straight[6:])


class TestGradientState(unittest.TestCase):
    def test_presence_of_gradients_round_trip(self):
        net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
        net[0](torch.ones(1, 2)).sum().backward()  # only the first layer gets gradients
        state = GradientState(net).state_dict()
        self.assertEqual(state["has_grad"].tolist(), [True, True, False, False])
        fresh = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
        GradientState(fresh).load_state_dict(state)
        self.assertTrue(torch.equal(fresh[0].weight.grad, torch.zeros(2, 2)))
        self.assertIsNone(fresh[1].weight.grad)
        with self.assertRaisesRegex(ValueError, r"one entry per parameter \(4\), got \(3,\)"):
            GradientState(fresh).load_state_dict({"has_grad": torch.ones(3, dtype=torch.bool)})


class TestResumeLoadDict(unittest.TestCase):
    def test_entries_included_only_when_the_checkpoint_has_them(self):
        rng, model = RandomState(), torch.nn.Linear(2, 1)
        grads = GradientState(model)
        optional = {"rng": rng, "grads": grads}
        with tempfile.TemporaryDirectory() as tmp:
            new, old = Path(tmp) / "new.pt", Path(tmp) / "old.pt"
            torch.save({"model": model.state_dict(), "rng": rng.state_dict(), "grads": grads.state_dict()}, new)
            torch.save({"model": model.state_dict()}, old)
            self.assertEqual(resume_load_dict({"model": model}, optional, new), {"model": model, **optional})
            with self.assertLogs("bundle.engines.rng", "WARNING") as logs:
                self.assertEqual(resume_load_dict({"model": model}, optional, old), {"model": model})
            self.assertIn("random stream restarted", logs.output[0])
            self.assertIn(str(old), logs.output[0])
            self.assertIn("['rng', 'grads']", logs.output[0])
            self.assertEqual(resume_load_dict({"model": model}, optional, ""), {"model": model, **optional})
            self.assertEqual(resume_load_dict({"model": model}, {"rng": None}, new), {"model": model})
            (Path(tmp) / "cut.pt").write_bytes(new.read_bytes()[:100])
            with self.assertRaisesRegex(ValueError, "cut.pt' is not a readable torch.save file"):
                resume_load_dict({"model": model}, optional, Path(tmp) / "cut.pt")


if __name__ == "__main__":
    unittest.main()
