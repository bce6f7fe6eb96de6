"""The source paper's detector baselines: MONAI's RetinaNet, trained and scored like the bundle's network.

Two detectors (:py:data:`DETECTORS`):

- ``retinanet_resnet50``: the heavy detector of the Model Zoo's ``lung_nodule_ct_detection`` bundle: a 3-D
  ResNet-50 (first convolution 7x7x7, stride 2x2x1) with a feature pyramid on its layers 1-2 (256 channels),
  RetinaNet heads with 3 anchor shapes, an ATSS matcher and a hard-negative sampler, the zoo's optimizer (SGD,
  learning rate 0.01, Nesterov momentum 0.9, weight decay 3e-5; without its 10-epoch warm-up, which the CPU budget
  would not get past).
- ``retinanet_resnet10``: the light detector: the same with a ResNet-10 and a 64-channel pyramid.

The anchors are the zoo's shapes rescaled from its 0.7 x 0.7 x 1.25 mm grid to the bundle's 1 x 1 x 2.5 mm grid.
Training reads the bundle's own ``train#dataloader`` from ``configs/train.json`` (same cases, preprocessing,
positive/negative patch sampling, augmentation and seed as the segmentation networks) and turns each patch's
label mask into boxes (one per 26-connected lesion component, :py:func:`boxes_from_label`). Evaluation reads
``validate#dataset`` of ``train.json`` + ``evaluate.json`` (the held-out scans with their lung envelope) and
scores the boxes' centres with the bundle's lesion metrics (LUNA16 hit rule, FROC/CPM), dropping centres outside
the lung envelope as the bundle's evaluation does. The output files are those of the bundle's evaluation
(``metrics.json``, ``froc.png``, ``per_scan.json``), so the rows join the ablation table.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine
from monai.apps.detection.networks.retinanet_detector import RetinaNetDetector
from monai.apps.detection.networks.retinanet_network import RetinaNet
from monai.apps.detection.utils.anchor_utils import AnchorGeneratorWithAnchorShape
from monai.bundle import ConfigParser
from monai.handlers import StatsHandler
from monai.networks.blocks.backbone_fpn_utils import BackboneWithFPN
from monai.networks.blocks.feature_pyramid_network import LastLevelMaxPool
from monai.networks.nets import resnet
from monai.networks.nets.resnet import ResNet
from monai.utils import set_determinism
from scipy import ndimage

from bundle.engines.budget import TrainingTimeLimit
from bundle.engines.report import write_detection_report
from bundle.io.atomic import atomic_path
from bundle.metrics import format_table
from bundle.lesions.reference import MERGE_GAP_MM, label_lesions

__all__ = [
    "DETECTORS",
    "TRAIN_CONFIG_FILES",
    "EVALUATE_CONFIG_FILES",
    "read_overrides_file",
    "boxes_from_label",
    "boxes_to_candidates",
    "build_detector",
    "evaluate_detector",
    "train_detector",
]

logger = logging.getLogger(__name__)

# name -> (ResNet depth, feature-pyramid channels)
DETECTORS: dict[str, tuple[int, int]] = {"retinanet_resnet50": (50, 256), "retinanet_resnet10": (10, 64)}
# the zoo's base anchors [6, 8, 4], [8, 6, 5], [10, 10, 6] voxels at 0.703 x 0.703 x 1.25 mm, on 1 x 1 x 2.5 mm
ANCHOR_SHAPES = ((4, 6, 2), (6, 4, 2), (7, 7, 3))
_CONFIGS = Path(__file__).resolve().parents[3] / "configs"  # the bundle's configs/
# what ``python -m scripts.detector_baseline`` trains and evaluates with (the overrides go on top)
TRAIN_CONFIG_FILES = [str(_CONFIGS / "train.json")]
EVALUATE_CONFIG_FILES = [str(_CONFIGS / "train.json"), str(_CONFIGS / "evaluate.json")]


def read_overrides_file(path: str | None, weights: str | None = None) -> dict[str, Any]:
    """
    The config overrides of a detector run: the JSON object in ``path`` (none when ``path`` is None or empty).

    Args:
        path: a JSON file holding one object of config overrides (``dataset_dir``, ``seed``, ``train_all`` ...).
        weights: the weights an evaluation will load; checked first, when given.

    Raises:
        ValueError: when ``weights`` is not a file, ``path`` cannot be read or parsed, or holds no JSON object.
    """
    if weights is not None and not Path(weights).is_file():
        raise ValueError(f"{weights}: no such weights file.")
    if not path:
        return {}
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read the overrides file ({err}).") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: the overrides file must hold a JSON object, got {type(data).__name__}.")
    return data


def _fpn_extractor(backbone: ResNet, out_channels: int) -> BackboneWithFPN:
    """MONAI's ``resnet_fpn_feature_extractor`` with layers 1-2 returned and a chosen pyramid width (MONAI fixes
    256, which makes the heads of a "light" detector 14 M parameters)."""
    in_channels = [backbone.in_planes // 8 * 2 ** (i - 1) for i in (1, 2)]
    return BackboneWithFPN(
        backbone=backbone,
        return_layers={"layer1": "0", "layer2": "1"},
        in_channels_list=in_channels,
        out_channels=out_channels,
        spatial_dims=3,
        extra_blocks=LastLevelMaxPool(3),
    )


def build_detector(name: str) -> RetinaNetDetector:
    """A RetinaNet detector of :py:data:`DETECTORS`, set up for training (matcher, sampler, target keys) and for
    whole-volume inference (score threshold 0.02, NMS IoU 0.22, at most 100 boxes per scan, as the zoo's bundle).

    Raises:
        ValueError: for an unknown name.
    """
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; choose from {sorted(DETECTORS)}.")
    depth, channels = DETECTORS[name]
    backbone = getattr(resnet, f"resnet{depth}")(
        spatial_dims=3, n_input_channels=1, conv1_t_stride=[2, 2, 1], conv1_t_size=[7, 7, 7]
    )
    network = RetinaNet(
        spatial_dims=3,
        num_classes=1,
        num_anchors=len(ANCHOR_SHAPES),
        feature_extractor=_fpn_extractor(backbone, channels),
        size_divisible=[16, 16, 8],
    )
    anchors = AnchorGeneratorWithAnchorShape(feature_map_scales=[1, 2, 4], base_anchor_shapes=ANCHOR_SHAPES)
    detector = RetinaNetDetector(network=network, anchor_generator=anchors)
    detector.set_atss_matcher(num_candidates=4, center_in_gt=False)
    detector.set_hard_negative_sampler(batch_size_per_image=64, positive_fraction=0.3, pool_size=20, min_neg=16)
    detector.set_target_keys(box_key="box", label_key="label")
    detector.set_box_selector_parameters(
        score_thresh=0.02, topk_candidates_per_level=1000, nms_thresh=0.22, detections_per_img=100
    )
    return detector


def boxes_from_label(label: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Boxes (N, 6) ``[x0, y0, z0, x1, y1, z1]`` in voxels (start inclusive, stop exclusive, as MONAI's
    ``convert_mask_to_box``) of the 26-connected lesion components of a label mask (1, H, W, D) or (H, W, D)."""
    mask = np.asarray(torch.as_tensor(label).detach().cpu()) > 0
    if mask.ndim == 4:
        mask = mask[0]
    if mask.ndim != 3:
        raise ValueError(f"label must be (1, H, W, D) or (H, W, D), got shape {tuple(mask.shape)}.")
    components, _ = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
    boxes = [[s.start for s in sl] + [s.stop for s in sl] for sl in ndimage.find_objects(components) if sl]
    return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 6)


def boxes_to_candidates(
    boxes: torch.Tensor | np.ndarray,
    scores: torch.Tensor | np.ndarray,
    affine: np.ndarray,
    mask: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """Lesion candidates (``center_mm``, ``score``, ``box``) from voxel boxes: each box's centre (voxel index
    ``(start + stop) / 2 - 0.5``) mapped by ``affine``; candidates centred outside ``mask`` are dropped."""
    boxes_np = np.asarray(torch.as_tensor(boxes).detach().cpu(), dtype=np.float64).reshape(-1, 6)
    scores_np = np.asarray(torch.as_tensor(scores).detach().cpu(), dtype=np.float64).reshape(-1)
    if len(boxes_np) != len(scores_np):
        raise ValueError(f"got {len(boxes_np)} boxes but {len(scores_np)} scores.")
    centers = (boxes_np[:, :3] + boxes_np[:, 3:]) / 2.0 - 0.5
    candidates = []
    for center, box, score in zip(centers, boxes_np, scores_np, strict=True):
        if mask is not None:
            index = tuple(np.clip(np.rint(center).astype(int), 0, np.asarray(mask.shape) - 1))
            if not mask[index]:
                continue
        world = affine @ np.append(center, 1.0)
        candidates.append({"center_mm": world[:3].tolist(), "score": float(score), "box": box.tolist()})
    return sorted(candidates, key=lambda c: -c["score"])


def _parser(config_files: Sequence[str], overrides: Mapping[str, Any]) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(list(config_files))
    parser.update(dict(overrides))
    return parser


def _patches(batch: Mapping[str, Any], device: torch.device) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
    """A collated batch of patches as RetinaNet's inputs: one image tensor and one target (the label's boxes, all of
    class 0) per patch."""
    images, targets = [], []
    for image, label in zip(batch["image"], batch["label"], strict=True):
        boxes = boxes_from_label(label).to(device)
        images.append((image.as_tensor() if hasattr(image, "as_tensor") else image).to(device))  # no MetaTensor
        targets.append({"box": boxes, "label": torch.zeros(len(boxes), dtype=torch.long, device=device)})
    return images, targets


def train_detector(
    name: str,
    output_dir: str,
    config_files: Sequence[str] = ("configs/train.json",),
    overrides: Mapping[str, Any] | None = None,
    epochs: int = 50,
    time_limit_s: float = 0,
    learning_rate: float = 0.01,
) -> Path:
    """Train a detector on the bundle's training patches; writes ``model.pt``, ``train_time.json`` and returns the
    weights' path.

    Args:
        name: a key of :py:data:`DETECTORS`.
        output_dir: where the weights and the training record go.
        config_files: the training config whose ``train#dataloader`` (data, sampling, augmentation), ``seed`` and
            ``device`` are used.
        overrides: config overrides (``dataset_dir``, ``seed``, ``train_all`` ...).
        epochs: the epoch budget; ``time_limit_s`` > 0 also stops after that many seconds of training.
        learning_rate: SGD learning rate (the zoo's 0.01).
    """
    parser = _parser(config_files, overrides or {})
    set_determinism(seed=parser.get_parsed_content("seed"))
    device = parser.get_parsed_content("device")
    detector = build_detector(name)
    detector.network.to(device)
    detector.train()
    optimizer = torch.optim.SGD(
        detector.network.parameters(), lr=learning_rate, momentum=0.9, weight_decay=3e-5, nesterov=True
    )
    loader = parser.get_parsed_content("train#dataloader")

    def step(engine: Engine, batch: Mapping[str, Any]) -> dict[str, float]:
        images, targets = _patches(batch, device)
        losses = detector(images, targets)
        loss = losses[detector.cls_key] + losses[detector.box_reg_key]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return {"loss": float(loss.detach())}

    trainer = Engine(step)
    out = Path(output_dir)
    TrainingTimeLimit(time_limit_s, str(out / "train_time.json")).attach(trainer)
    StatsHandler(name="detector_train", output_transform=lambda x: x["loss"], tag_name="train_loss").attach(trainer)
    trainer.run(loader, max_epochs=epochs)
    weights = out / "model.pt"
    with atomic_path(weights) as tmp:
        torch.save(detector.network.state_dict(), tmp)
    return weights


def evaluate_detector(
    name: str,
    weights: str,
    eval_dir: str,
    config_files: Sequence[str] = ("configs/train.json", "configs/evaluate.json"),
    overrides: Mapping[str, Any] | None = None,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """Score a trained detector on the held-out scans with the bundle's lesion metrics; prints the table and writes
    ``metrics.json``, ``froc.png`` and ``per_scan.json`` to ``eval_dir``. Returns the metrics dict."""
    parser = _parser(config_files, overrides or {})
    set_determinism(seed=parser.get_parsed_content("seed"))
    device = parser.get_parsed_content("device")
    detector = build_detector(name)
    detector.network.load_state_dict(torch.load(weights, map_location=device, weights_only=True))
    detector.network.to(device)
    detector.eval()
    dataset = parser.get_parsed_content("validate#dataset")
    merge_gap_mm = parser.get_parsed_content("merge_gap_mm") if "merge_gap_mm" in parser else MERGE_GAP_MM
    per_scan, seconds = [], []
    for index in range(len(dataset)):
        item = dataset[index]
        image = item["image"]
        affine = np.asarray(image.affine, dtype=np.float64)
        start = time.perf_counter()
        with torch.no_grad():
            out = detector([image.as_tensor().to(device)], use_inferer=False)[0]
        seconds.append(time.perf_counter() - start)
        mask = np.asarray(item["lung_mask"])[0] > 0 if "lung_mask" in item else None
        candidates = boxes_to_candidates(out[detector.target_box_key], out[detector.pred_score_key], affine, mask)
        lesions = label_lesions(np.asarray(item["label"])[0], affine, merge_gap_mm)
        per_scan.append((candidates, lesions))
        logger.info("scan %d: %d lesions, %d candidates, %.1f s", index, len(lesions), len(candidates), seconds[-1])
    n_params = sum(p.numel() for p in detector.network.parameters())
    seconds_per_volume = float(np.mean(seconds)) if seconds else None
    results = write_detection_report(per_scan, eval_dir, n_params, seconds_per_volume, threshold, f"{name} (held-out)")
    print(format_table(results))
    return results

