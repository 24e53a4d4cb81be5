"""RISurConv layers: the set-abstraction stage and the segmenter's feature propagation.

Attribute names mirror the official modules so state-dict keys match official checkpoints
(``embedding.0``, ``self_attention_0.q_conv``, ``risurconv.0``, ``mlp_convs.0``, ...). The official
code runs 1x1 convolutions on ``[B, C, K, S]``; here tensors stay channels-last (``[B, S, K, C]``) and
the conv weights are applied as linear maps, which is the same arithmetic and faster on CPU.
BatchNorm uses the modules' own buffers (batch statistics over every non-channel axis in training,
like BatchNorm2d over (B, K, S); running statistics in eval).

Kernels: knn / fps / gather go through facet3d.kernels' dispatcher; `plain_torch()` (or a model's
``backend`` attribute) forces their plain-PyTorch backends.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facet3d.kernels.fps import farthest_point_sample
from facet3d.kernels.gather import gather_points
from facet3d.kernels.knn import knn
from facet3d.plugins.risurconv.features import local_surfaces
from facet3d.plugins.risurconv.lra import group_all_axis

_BACKEND: contextvars.ContextVar[str | None] = contextvars.ContextVar("risurconv_backend", default=None)


@contextlib.contextmanager
def plain_torch() -> Iterator[None]:
    """Run knn / fps / gather on their plain-PyTorch backends inside this block."""
    token = _BACKEND.set("torch")
    try:
        yield
    finally:
        _BACKEND.reset(token)


def _backend(explicit: str | None) -> str | None:
    return explicit if explicit is not None else _BACKEND.get()


def _linear(x: Tensor, conv: nn.Module) -> Tensor:
    """A 1x1 Conv1d/Conv2d applied to channels-last `x` [..., C_in] -> [..., C_out]."""
    return F.linear(x, conv.weight.flatten(1), conv.bias)


def _bn(x: Tensor, bn: nn.modules.batchnorm._BatchNorm) -> Tensor:
    """BatchNorm over the last axis of `x` with `bn`'s parameters and buffers (same semantics)."""
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
    else:
        momentum = 0.0 if bn.momentum is None else bn.momentum
    use_batch = bn.training or bn.running_mean is None
    shape = x.shape
    y = F.batch_norm(x.reshape(-1, shape[-1]), bn.running_mean, bn.running_var, bn.weight, bn.bias,
                     use_batch, momentum, bn.eps)
    return y.reshape(shape)


def _fused(conv: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> tuple[Tensor, Tensor | None, bool]:
    """Weights of conv followed by bn: folded into one affine map in eval mode (saves a pass over
    the largest tensors); in training the conv's own weights, and the caller applies `_bn`.
    returns (weight [C_out, C_in], bias [C_out] or None, bn_still_to_apply)"""
    w = conv.weight.flatten(1)
    if bn.training or bn.running_mean is None:
        return w, conv.bias, True
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    bias = bn.bias - bn.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    return w * scale[:, None], bias, False


def _linear_bn(x: Tensor, conv: nn.Module, bn: nn.modules.batchnorm._BatchNorm) -> Tensor:
    """bn(conv(x)) on channels-last x."""
    w, b, post = _fused(conv, bn)
    y = F.linear(x, w, b)
    return _bn(y, bn) if post else y


def _group(feats: Tensor, idx: Tensor, backend: str | None) -> Tensor:
    """feats [B, N, C], idx [B, S, K] -> [B, S, K, C]."""
    return gather_points(feats, idx, backend=backend)


class OffsetAttention2d(nn.Module):
    """SA1: offset-attention among the K neighbours of each centre (official ``SA_Layer_2d``).

    Official quirk kept (checkpoints are trained with it): after the softmax over keys, the weights
    are renormalised over the *centre* axis, ``a / (1e-9 + sum_s a)``, which mixes the regions of one
    sample (never across samples). With one centre (group-all) every weight becomes ~1.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.q_conv = nn.Conv2d(channels, channels // 4, 1, bias=False)
        self.k_conv = nn.Conv2d(channels, channels // 4, 1, bias=False)
        self.v_conv = nn.Conv2d(channels, channels, 1)
        self.trans_conv = nn.Conv2d(channels, channels, 1)
        self.after_norm = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        """x: Tensor  # [B, S, K, C] -> [B, S, K, C]"""
        q, k, v = _linear(x, self.q_conv), _linear(x, self.k_conv), _linear(x, self.v_conv)
        att = torch.softmax(q @ k.transpose(-1, -2), dim=-1)          # [B, S, K(query), K(key)]
        att = att / (1e-9 + att.sum(dim=1, keepdim=True))
        x_r = att.transpose(-1, -2) @ v                               # out_j = sum_i att_ij v_i
        return x + F.relu_(_linear_bn(x - x_r, self.trans_conv, self.after_norm))


class OffsetAttention1d(nn.Module):
    """SA2: offset-attention across the centres of one sample (official ``SA_Layer``, PCT style:
    softmax over keys, then renormalised over queries)."""

    def __init__(self, channels: int):
        super().__init__()
        self.q_conv = nn.Conv1d(channels, channels // 4, 1, bias=False)
        self.k_conv = nn.Conv1d(channels, channels // 4, 1, bias=False)
        self.v_conv = nn.Conv1d(channels, channels, 1)
        self.trans_conv = nn.Conv1d(channels, channels, 1)
        self.after_norm = nn.BatchNorm1d(channels)

    def forward(self, x: Tensor) -> Tensor:
        """x: Tensor  # [B, S, C] -> [B, S, C]"""
        q, k, v = _linear(x, self.q_conv), _linear(x, self.k_conv), _linear(x, self.v_conv)
        att = torch.softmax(q @ k.transpose(-1, -2), dim=-1)          # [B, S, S]
        att = att / (1e-9 + att.sum(dim=1, keepdim=True))
        x_r = att.transpose(-1, -2) @ v
        return x + F.relu_(_linear_bn(x - x_r, self.trans_conv, self.after_norm))


def _embedding() -> nn.Sequential:
    """RISP 14 -> 32 -> 64 (no ReLU between the two conv+BN pairs, as in the official code)."""
    return nn.Sequential(nn.Conv2d(14, 32, 1, bias=False), nn.BatchNorm2d(32),
                         nn.Conv2d(32, 64, 1, bias=False), nn.BatchNorm2d(64))


class _SurfaceBlock(nn.Module):
    """Shared body: embed RISP, SA1, concat grouped features, conv+BN+ReLU, max over K, SA2."""

    def __init__(self, conv_in: int, out_channels: int):
        super().__init__()
        self._build(conv_in, out_channels)

    def _build(self, conv_in: int, out_channels: int) -> None:
        self.embedding = _embedding()
        self.self_attention_0 = OffsetAttention2d(64)
        self.risurconv = nn.Sequential(nn.Conv2d(conv_in, out_channels, 1), nn.BatchNorm2d(out_channels))
        self.self_attention_1 = OffsetAttention1d(out_channels)

    def _embed(self, ri: Tensor) -> Tensor:
        e = self.embedding
        return F.relu_(_linear_bn(_linear_bn(ri, e[0], e[1]), e[2], e[3]))

    def project_previous(self, feats: Tensor) -> Tensor:
        """The previous-stage half of the RISurConv 1x1 conv, applied per point before grouping.

        conv([ri, grouped]) = W_ri ri + W_prev grouped + b, and W_prev commutes with the gather, so
        it runs on the N points instead of the S*K grouped copies (K-fold fewer multiply-adds).
        feats: Tensor  # [B, N, C_in] -> [B, N, C_out]
        """
        w, b, _ = _fused(self.risurconv[0], self.risurconv[1])
        return F.linear(feats, w[:, 64:], b)

    def body(self, ri: Tensor, grouped_proj: Tensor | None) -> Tensor:
        """ri [B, S, K, 14], grouped_proj [B, S, K, out] (`project_previous`, grouped) or None -> [B, S, out]"""
        x = self.self_attention_0(self._embed(ri))
        w, b, post = _fused(self.risurconv[0], self.risurconv[1])
        if grouped_proj is None:
            x = F.linear(x, w, b)
        else:
            x = torch.addmm(grouped_proj.reshape(-1, w.shape[0]), x.reshape(-1, 64), w[:, :64].t())
            x = x.reshape(grouped_proj.shape)
        if post:
            x = _bn(x, self.risurconv[1])
        return self.self_attention_1(F.relu_(x).amax(dim=2))


class RISurConvSA(_SurfaceBlock):
    """One RISurConv set-abstraction stage.

    npoint: centres by FPS (started at the point farthest from the centroid); None = group-all
    nsample: K nearest neighbours (centre included); in_channels: previous stage's feature width
    """

    def __init__(self, npoint: int | None, nsample: int | None, in_channels: int, out_channels: int):
        super().__init__(64 + in_channels, out_channels)
        self.npoint, self.nsample = npoint, nsample
        self.group_all = npoint is None

    def forward(self, xyz: Tensor, normals: Tensor, feats: Tensor | None,
                backend: str | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """
        xyz: Tensor      # [B, N, 3]
        normals: Tensor  # [B, N, 3] unit normals
        feats: Tensor    # [B, N, C_in] or None (first stage)
        returns (new_xyz [B, S, 3], new_normals [B, S, 3], new_feats [B, S, C_out]); S = 1 for
        group-all, whose "centre" is the centroid and whose normal is the signed LRA.
        """
        be = _backend(backend)
        geo = torch.cat([xyz, normals], dim=-1)                       # [B, N, 6]
        if self.group_all:
            centroid, axis = group_all_axis(xyz, normals)
            new_xyz, new_normals = centroid[:, None, :], axis[:, None, :]
            idx = torch.arange(xyz.shape[1], device=xyz.device).expand(xyz.shape[0], 1, -1)  # FPS order
            grouped = geo[:, None]
            ri, perm = local_surfaces(grouped[..., :3], grouped[..., 3:], new_xyz, new_normals, origin_reference=True)
        else:
            if self.npoint == xyz.shape[1]:
                # FPS of all N points only permutes them, and every later step is equivariant to the
                # centre order (up to exact distance ties), so keep the input order: saves N FPS steps.
                sel = torch.arange(xyz.shape[1], device=xyz.device).expand(xyz.shape[0], -1)
            else:
                # Keep FPS *order* (ordered=True, not the faster unordered CPU set): reordering the
                # sampled centres moved logits by ~5e-3 in a check (the cause is not pinned down yet),
                # while FPS order is intrinsic to the cloud, so permutation/rotation invariance holds.
                with torch.no_grad():
                    sel = farthest_point_sample(xyz.detach(), self.npoint, start="farthest_from_centroid",
                                                backend=be)
            centres = _group(geo, sel[:, :, None], be)[:, :, 0]
            new_xyz, new_normals = centres[..., :3], centres[..., 3:]
            with torch.no_grad():
                _, idx = knn(new_xyz.detach().contiguous(), xyz.detach().contiguous(), self.nsample, backend=be)
            grouped = _group(geo, idx, be)                            # [B, S, K, 6]
            ri, perm = local_surfaces(grouped[..., :3], grouped[..., 3:], new_xyz, new_normals)
        prev = None
        if feats is not None:
            prev = _group(self.project_previous(feats), torch.gather(idx, -1, perm), be)
        return new_xyz, new_normals, self.body(ri, prev)


class RISurConvFP(_SurfaceBlock):
    """Feature propagation (official ``RIConv2FeaturePropagation``): RISP of the K nearest coarse
    points around every fine point, the coarse features grouped alongside, then an MLP on
    [result, fine skip features]."""

    def __init__(self, nsample: int, coarse_channels: int, out_channels: int, skip_channels: int,
                 mlp: tuple[int, ...] | list[int]):
        nn.Module.__init__(self)
        # registered before the body, as officially, so state-dict keys come in the official order
        self.mlp_convs = nn.ModuleList()
        self.mlp_bns = nn.ModuleList()
        self._build(64 + coarse_channels, out_channels)
        self.nsample = nsample
        last = out_channels + skip_channels
        for c in mlp:
            self.mlp_convs.append(nn.Conv1d(last, c, 1))
            self.mlp_bns.append(nn.BatchNorm1d(c))
            last = c
        self.out_channels = last

    def forward(self, xyz1: Tensor, xyz2: Tensor, norm1: Tensor, norm2: Tensor, points1: Tensor | None,
                points2: Tensor, backend: str | None = None) -> Tensor:
        """
        xyz1, norm1: Tensor  # [B, N, 3] fine points (the centres) and their normals
        xyz2, norm2: Tensor  # [B, S, 3] coarse points (the neighbours)
        points1: Tensor      # [B, N, C1] fine skip features or None
        points2: Tensor      # [B, S, C2] coarse features
        returns: Tensor      # [B, N, out_channels]
        """
        be = _backend(backend)
        with torch.no_grad():
            _, idx = knn(xyz1.detach().contiguous(), xyz2.detach().contiguous(), self.nsample, backend=be)
        grouped = _group(torch.cat([xyz2, norm2], dim=-1), idx, be)
        ri, perm = local_surfaces(grouped[..., :3], grouped[..., 3:], xyz1, norm1)
        prev = _group(self.project_previous(points2), torch.gather(idx, -1, perm), be)
        x = self.body(ri, prev)
        if points1 is not None:
            x = torch.cat([x, points1], dim=-1)
            for conv, bn in zip(self.mlp_convs, self.mlp_bns):
                x = F.relu_(_linear_bn(x, conv, bn))
        return x
