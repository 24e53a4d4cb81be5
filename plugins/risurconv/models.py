"""RISurConv classifier and part segmenter, named configs, and config inference from state dicts.

Inputs: ``xyz`` already normalised to the unit sphere (centred: the group-all stage measures
positions from the origin) and unit ``normals`` oriented consistently (their sign matters:
negating all normals changes the output). Rotating xyz and normals together about the origin
leaves the output unchanged up to rounding; reflections do not (the features use cross products).

Differences from the official code, all fixing rotation/permutation/batch invariance (the weights
are unchanged and official checkpoints load strictly):
* FPS starts at the point farthest from the centroid (official: index 0 / random), ties -> lowest index;
* kNN ties -> lower index, angular-order ties -> kNN order (stable sort);
* the group-all axis (LRA) gets a deterministic, rotation-equivariant sign (see lra.py);
* the Transformer runs with batch_first semantics on [B, 1, C]: each sample attends only to itself
  (official: batch_first=False, so the samples of a batch attended to each other). Parameter names
  are the official ones, including the unused ``encoder_layer`` template that nn.TransformerEncoder copies.
In eval mode the output of a sample does not depend on the rest of the batch.
"""

from __future__ import annotations

import copy
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facet3d.core.errors import CheckpointError, UsageError
from facet3d.plugins.risurconv.layers import RISurConvFP, RISurConvSA


class RISurConvClassifier(nn.Module):
    """RISurConv classification network (5 stages, Transformer, MLP head).

    num_classes: output classes; n: centre multiplier (npoint 512n, 256n, 128n, 64n; official n = 2 for
    ModelNet40/FG3D, 1 for ScanObjectNN); channels: 5 stage widths; neighbours: K of stages 1-4;
    npoints: overrides the 512n... centres; transformer_layers: 0 disables the Transformer;
    heads / ff_dim / dropout: Transformer; head: hidden widths of the MLP head.
    """

    task = "cls"

    def __init__(self, num_classes: int = 40, n: int = 2, channels=(32, 64, 128, 256, 512),
                 neighbours=(8, 16, 32, 64), transformer_layers: int = 3, npoints=None, heads: int = 8,
                 ff_dim: int = 2048, dropout: float = 0.05, head=(256, 128), head_dropout: float = 0.4):
        super().__init__()
        channels, neighbours = tuple(channels), tuple(neighbours)
        npoints = tuple(npoints) if npoints is not None else (512 * n, 256 * n, 128 * n, 64 * n)
        if len(channels) != 5 or len(neighbours) != 4 or len(npoints) != 4:
            raise UsageError("RISurConvClassifier needs 5 channels, 4 neighbours and 4 npoints")
        self.config = dict(task="cls", num_classes=num_classes, n=n, channels=list(channels),
                           neighbours=list(neighbours), npoints=list(npoints), transformer_layers=transformer_layers,
                           heads=heads, ff_dim=ff_dim, dropout=dropout, head=list(head), head_dropout=head_dropout)
        self.backend: str | None = None  # "torch" forces plain-PyTorch knn/fps/gather
        c_in = 0
        for i in range(5):
            stage = RISurConvSA(npoints[i] if i < 4 else None, neighbours[i] if i < 4 else None, c_in, channels[i])
            setattr(self, f"sc{i}", stage)
            c_in = channels[i]
        d = channels[4]
        if transformer_layers > 0:
            # batch_first=True: a [B, 1, d] input is B sequences of length 1 (per-sample attention).
            self.encoder_layer = nn.TransformerEncoderLayer(d_model=d, nhead=heads, dim_feedforward=ff_dim,
                                                            dropout=dropout, batch_first=True)
            self.transformer_encoder = nn.TransformerEncoder(self.encoder_layer, num_layers=transformer_layers,
                                                             enable_nested_tensor=False)
        h1, h2 = head
        self.fc1, self.bn1, self.drop1 = nn.Linear(d, h1), nn.BatchNorm1d(h1), nn.Dropout(head_dropout)
        self.fc2, self.bn2, self.drop2 = nn.Linear(h1, h2), nn.BatchNorm1d(h2), nn.Dropout(head_dropout)
        self.fc3 = nn.Linear(h2, num_classes)

    def features(self, xyz: Tensor, normals: Tensor) -> Tensor:
        """Global descriptor after the Transformer. xyz, normals [B, N, 3] -> [B, channels[-1]]"""
        _check_inputs(xyz, normals)
        x, nrm, f = xyz, normals, None
        for i in range(5):
            x, nrm, f = getattr(self, f"sc{i}")(x, nrm, f, backend=self.backend)
        if hasattr(self, "transformer_encoder"):
            f = self.transformer_encoder(f)                           # [B, 1, d]
        return f[:, 0]

    def forward(self, xyz: Tensor, normals: Tensor) -> Tensor:
        """xyz: Tensor  # [B, N, 3]; normals: Tensor  # [B, N, 3] -> log-probabilities [B, num_classes]"""
        g = self.features(xyz, normals)
        x = self.drop1(F.relu(self.bn1(self.fc1(g))))
        x = self.drop2(F.relu(self.bn2(self.fc2(x))))
        return F.log_softmax(self.fc3(x), dim=-1)


class RISurConvSegmenter(nn.Module):
    """RISurConv part segmentation network (4 SA stages, 4 FP layers, category one-hot, conv head).

    channels: SA widths; npoints / neighbours: SA centres and K; fp_neighbours: K of fp3, fp2, fp1, fp0;
    fp_channels: their RISurConv widths; fp_mlps: their MLPs; head: hidden width of the point head.
    """

    task = "seg"

    def __init__(self, num_parts: int = 50, num_categories: int = 16, channels=(64, 128, 256, 512),
                 npoints=(512, 256, 128, 64), neighbours=(8, 16, 32, 64), fp_neighbours=(64, 32, 32, 32),
                 fp_channels=(512, 512, 256, 128), fp_mlps=((512,), (256,), (128,), ()), head: int = 128,
                 head_dropout: float = 0.4):
        super().__init__()
        channels, npoints, neighbours = tuple(channels), tuple(npoints), tuple(neighbours)
        if not (len(channels) == len(npoints) == len(neighbours) == 4 and len(fp_neighbours) == 4):
            raise UsageError("RISurConvSegmenter needs 4 SA stages and 4 FP layers")
        self.config = dict(task="seg", num_parts=num_parts, num_categories=num_categories, channels=list(channels),
                           npoints=list(npoints), neighbours=list(neighbours), fp_neighbours=list(fp_neighbours),
                           fp_channels=list(fp_channels), fp_mlps=[list(m) for m in fp_mlps], head=head,
                           head_dropout=head_dropout)
        self.backend: str | None = None
        self.num_categories = num_categories
        c_in = 0
        for i in range(4):
            setattr(self, f"sa{i}", RISurConvSA(npoints[i], neighbours[i], c_in, channels[i]))
            c_in = channels[i]
        # fp3 propagates sa3 -> sa2 points, ..., fp0 sa0 -> input points (skip = category one-hot)
        skips = (channels[2], channels[1], channels[0], num_categories)
        coarse = channels[3]
        for j, level in enumerate((3, 2, 1, 0)):
            fp = RISurConvFP(fp_neighbours[j], coarse, fp_channels[j], skips[j], fp_mlps[j])
            setattr(self, f"fp{level}", fp)
            coarse = fp.out_channels
        self.conv1 = nn.Conv1d(coarse, head, 1)
        self.bn1 = nn.BatchNorm1d(head)
        self.drop1 = nn.Dropout(head_dropout)
        self.conv2 = nn.Conv1d(head, num_parts, 1)

    def forward(self, xyz: Tensor, normals: Tensor, category: Tensor) -> Tensor:
        """
        xyz: Tensor       # [B, N, 3]
        normals: Tensor   # [B, N, 3]
        category: Tensor  # [B] int64 object category (or [B, num_categories] one-hot)
        returns: Tensor   # [B, N, num_parts] log-probabilities
        """
        _check_inputs(xyz, normals)
        B, N, _ = xyz.shape
        if category.dim() == 1:
            onehot = F.one_hot(category.long(), self.num_categories).to(xyz.dtype)
        else:
            onehot = category.to(xyz.dtype).reshape(B, self.num_categories)
        be = self.backend
        levels = [(xyz, normals, None)]
        for i in range(4):
            x, nrm, f = levels[-1]
            levels.append(getattr(self, f"sa{i}")(x, nrm, f, backend=be))
        (x0, n0, _), (x1, n1, f1), (x2, n2, f2), (x3, n3, f3), (x4, n4, f4) = levels
        f3 = self.fp3(x3, x4, n3, n4, f3, f4, backend=be)
        f2 = self.fp2(x2, x3, n2, n3, f2, f3, backend=be)
        f1 = self.fp1(x1, x2, n1, n2, f1, f2, backend=be)
        f0 = self.fp0(x0, x1, n0, n1, onehot[:, None, :].expand(B, N, -1), f1, backend=be)
        h = F.relu(self.bn1(self.conv1(f0.transpose(1, 2))))
        out = self.conv2(self.drop1(h))                               # [B, parts, N]
        return F.log_softmax(out, dim=1).transpose(1, 2)


def _check_inputs(xyz: Tensor, normals: Tensor) -> None:
    if xyz.dim() != 3 or xyz.shape[-1] != 3 or normals.shape != xyz.shape:
        raise UsageError(f"need xyz and normals [B, N, 3], got {tuple(xyz.shape)} and {tuple(normals.shape)}")


_OFFICIAL_CLS = dict(task="cls", channels=[32, 64, 128, 256, 512], neighbours=[8, 16, 32, 64], transformer_layers=3)
CONFIGS: dict[str, dict[str, Any]] = {
    # official (parameter counts 13,963,080 / 13,959,855 / 4,063,730)
    "modelnet40": dict(_OFFICIAL_CLS, num_classes=40, n=2),
    "scanobjectnn": dict(_OFFICIAL_CLS, num_classes=15, n=1),
    "partseg": dict(task="seg", num_parts=50, num_categories=16),
    # reduced CPU configs (same structure, fewer centres / channels / Transformer layers)
    "small": dict(task="cls", num_classes=40, npoints=[256, 128, 64, 32], neighbours=[8, 16, 16, 32],
                  channels=[32, 64, 128, 128, 256], transformer_layers=1, heads=4, ff_dim=512),
    "tiny": dict(task="cls", num_classes=40, npoints=[128, 64, 32, 16], neighbours=[8, 8, 16, 16],
                 channels=[16, 32, 64, 64, 128], transformer_layers=0, head=[64, 32]),
    "partseg_small": dict(task="seg", num_parts=50, num_categories=16, npoints=[256, 128, 64, 32],
                          neighbours=[8, 16, 16, 32], channels=[32, 64, 128, 256], fp_neighbours=[32, 16, 16, 16],
                          fp_channels=[256, 256, 128, 64], fp_mlps=[[256], [128], [64], []], head=64),
}


def build_model(config: str | Mapping[str, Any]) -> nn.Module:
    """A fresh model from a CONFIGS name or a config dict (``task`` "cls" or "seg" plus constructor kwargs)."""
    if isinstance(config, str):
        if config not in CONFIGS:
            raise UsageError(f"unknown RISurConv config {config!r} (have: {', '.join(CONFIGS)})")
        config = CONFIGS[config]
    cfg = copy.deepcopy(dict(config))
    task = cfg.pop("task", "cls")
    if task == "cls":
        return RISurConvClassifier(**cfg)
    if task == "seg":
        return RISurConvSegmenter(**cfg)
    raise UsageError(f"config task must be 'cls' or 'seg', got {task!r}")


def infer_config(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The config of an official-layout state dict, read from its shapes.

    Stage widths come from ``*.risurconv.0.weight``, classes/parts from the last layer, Transformer
    depth from ``transformer_encoder.layers.*``. Centre counts and K are not in a state dict: the
    official values are assumed, with n = 1 for 15-class (ScanObjectNN) and n = 2 otherwise.
    """
    sd = state_dict

    def shape(key: str) -> tuple[int, ...]:
        return tuple(sd[key].shape)

    if "fc3.weight" in sd and "sc0.risurconv.0.weight" in sd:
        num_classes = shape("fc3.weight")[0]
        channels = [shape(f"sc{i}.risurconv.0.weight")[0] for i in range(5) if f"sc{i}.risurconv.0.weight" in sd]
        layers = len({k.split(".")[2] for k in sd if k.startswith("transformer_encoder.layers.")})
        cfg: dict[str, Any] = dict(task="cls", num_classes=num_classes, n=1 if num_classes == 15 else 2,
                                   channels=channels, neighbours=[8, 16, 32, 64], transformer_layers=layers)
        if layers:
            cfg["ff_dim"] = shape("transformer_encoder.layers.0.linear1.weight")[0]
        cfg["head"] = [shape("fc1.weight")[0], shape("fc2.weight")[0]]
        return cfg
    if "conv2.weight" in sd and "sa0.risurconv.0.weight" in sd and "fp0.risurconv.0.weight" in sd:
        channels = [shape(f"sa{i}.risurconv.0.weight")[0] for i in range(4)]
        fp_channels = [shape(f"fp{j}.risurconv.0.weight")[0] for j in (3, 2, 1, 0)]
        fp_mlps = [[shape(k)[0] for k in sorted(kk for kk in sd if kk.startswith(f"fp{j}.mlp_convs.")
                                                and kk.endswith(".weight"))] for j in (3, 2, 1, 0)]
        num_parts, head = shape("conv2.weight")[0], shape("conv1.weight")[0]
        if fp_mlps[3]:  # the category one-hot enters fp0's MLP beside its RISurConv output
            num_categories = shape("fp0.mlp_convs.0.weight")[1] - fp_channels[3]
        else:
            num_categories = shape("conv1.weight")[1] - fp_channels[3]
        return dict(task="seg", num_parts=num_parts, num_categories=num_categories, channels=channels,
                    fp_channels=fp_channels, fp_mlps=fp_mlps, head=head)
    first = ", ".join(list(sd)[:3])
    raise CheckpointError(f"state dict matches no RISurConv layout (no fc3/sc0 or conv2/sa0/fp0 keys; first keys: {first})")
