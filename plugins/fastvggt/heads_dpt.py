"""The DPT dense head of VGGT (depth, world points, and the track head's feature extractor).

Four aggregator layers -> LayerNorm -> 1x1 projections (256, 512, 1024, 1024 channels) + a sinusoidal
uv embedding -> resize to strides 4, 8, 14, 28 patches (deconv x4, deconv x2, identity, conv /2) ->
RefineNet fusion (``scratch``) -> ``output_conv1`` -> bilinear to the image size (``/ down_ratio``) ->
uv embedding -> ``output_conv2`` -> activation (values) and ``1 + exp`` (confidence).
Frames run in chunks of ``frames_chunk_size`` so memory stays bounded for long sequences.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_INT_MAX = 1610612736


def interpolate(x: Tensor, size: tuple[int, int] | None = None, scale_factor: float | None = None,
                mode: str = "bilinear", align_corners: bool = True) -> Tensor:
    """``F.interpolate`` split along the batch when the output would exceed the kernel's int32 limit."""
    if size is None:
        size = (int(x.shape[-2] * scale_factor), int(x.shape[-1] * scale_factor))
    n = size[0] * size[1] * x.shape[0] * x.shape[1]
    if n > _INT_MAX:
        parts = torch.chunk(x, n // _INT_MAX + 1, dim=0)
        return torch.cat([F.interpolate(p, size=size, mode=mode, align_corners=align_corners) for p in parts]).contiguous()
    return F.interpolate(x, size=size, mode=mode, align_corners=align_corners)


def sincos_1d(dim: int, pos: Tensor, omega_0: float = 100.0) -> Tensor:
    """``pos [M]`` -> ``[M, dim]`` = [sin(pos * w), cos(pos * w)], ``w_i = omega_0^(-2i/dim)`` (float64 inside)."""
    omega = torch.arange(dim // 2, dtype=torch.float32 if pos.device.type == "mps" else torch.float64,
                         device=pos.device)
    omega = 1.0 / omega_0 ** (omega / (dim / 2.0))
    out = torch.outer(pos.reshape(-1).to(omega.dtype), omega)
    return torch.cat([out.sin(), out.cos()], dim=1).float()


def uv_embedding(width: int, height: int, channels: int, aspect_ratio: float, dtype, device) -> Tensor:
    """``[channels, height, width]``: sin/cos of a uv grid spanning the image's aspect, normalised by its diagonal."""
    diag = (aspect_ratio ** 2 + 1.0) ** 0.5
    span_x, span_y = aspect_ratio / diag, 1.0 / diag
    xs = torch.linspace(-span_x * (width - 1) / width, span_x * (width - 1) / width, width, dtype=dtype, device=device)
    ys = torch.linspace(-span_y * (height - 1) / height, span_y * (height - 1) / height, height, dtype=dtype,
                        device=device)
    uu, vv = torch.meshgrid(xs, ys, indexing="xy")  # [height, width]
    emb = torch.cat([sincos_1d(channels // 2, uu.reshape(-1)), sincos_1d(channels // 2, vv.reshape(-1))], dim=-1)
    return emb.view(height, width, channels).permute(2, 0, 1)


class ResidualConvUnit(nn.Module):
    """``conv2(relu(conv1(relu(x)))) + relu(x)``: upstream's in-place ReLU also rewrites the skip input."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        r = F.relu(x)
        return self.conv2(F.relu(self.conv1(r))) + r


class FeatureFusionBlock(nn.Module):
    """``out_conv(upsample(rcu2(x + rcu1(skip))))`` (no skip for the deepest level)."""

    def __init__(self, features: int, has_residual: bool = True) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1)
        if has_residual:
            self.resConfUnit1 = ResidualConvUnit(features)
        self.has_residual = has_residual
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x: Tensor, skip: Tensor | None = None, size: tuple[int, int] | None = None) -> Tensor:
        if self.has_residual and skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        x = interpolate(x, size=size, scale_factor=None if size is not None else 2, mode="bilinear", align_corners=True)
        return self.out_conv(x)


def activate(out: Tensor, activation: str, conf_activation: str) -> tuple[Tensor, Tensor]:
    """``[N, C, H, W]`` -> (values ``[N, H, W, C-1]``, confidence ``[N, H, W]``)."""
    fmap = out.permute(0, 2, 3, 1)
    xyz, conf = fmap[..., :-1], fmap[..., -1]
    if activation == "exp":
        vals = torch.exp(xyz)
    elif activation == "inv_log":
        vals = torch.sign(xyz) * torch.expm1(torch.abs(xyz))
    elif activation == "linear":
        vals = xyz
    elif activation == "relu":
        vals = F.relu(xyz)
    else:
        raise ValueError(f"unknown activation {activation!r}")
    if conf_activation == "expp1":
        c = 1 + conf.exp()
    elif conf_activation == "expp0":
        c = conf.exp()
    elif conf_activation == "sigmoid":
        c = torch.sigmoid(conf)
    else:
        raise ValueError(f"unknown confidence activation {conf_activation!r}")
    return vals, c


class DPTHead(nn.Module):
    """Dense prediction from aggregator layers ``intermediate_layer_idx``.

    forward(tokens {layer: [B, S, P, C]}, images [B, S, 3, H, W], patch_start_idx) ->
    (values ``[B, S, H, W, output_dim-1]``, confidence ``[B, S, H, W]``), or features
    ``[B, S, features, H/down, W/down]`` when ``feature_only``.
    """

    def __init__(self, dim_in: int, patch_size: int = 14, output_dim: int = 4, activation: str = "inv_log",
                 conf_activation: str = "expp1", features: int = 256,
                 out_channels: Sequence[int] = (256, 512, 1024, 1024),
                 intermediate_layer_idx: Sequence[int] = (4, 11, 17, 23), pos_embed: bool = True,
                 feature_only: bool = False, down_ratio: int = 1) -> None:
        super().__init__()
        self.patch_size, self.activation, self.conf_activation = patch_size, activation, conf_activation
        self.pos_embed, self.feature_only, self.down_ratio = pos_embed, feature_only, down_ratio
        self.intermediate_layer_idx = list(intermediate_layer_idx)
        oc = list(out_channels)
        self.norm = nn.LayerNorm(dim_in)
        self.projects = nn.ModuleList([nn.Conv2d(dim_in, c, 1) for c in oc])
        self.resize_layers = nn.ModuleList([
            nn.ConvTranspose2d(oc[0], oc[0], kernel_size=4, stride=4),
            nn.ConvTranspose2d(oc[1], oc[1], kernel_size=2, stride=2),
            nn.Identity(),
            nn.Conv2d(oc[3], oc[3], kernel_size=3, stride=2, padding=1),
        ])
        self.scratch = nn.Module()
        for i, c in enumerate(oc, 1):
            setattr(self.scratch, f"layer{i}_rn", nn.Conv2d(c, features, 3, padding=1, bias=False))
        self.scratch.refinenet1 = FeatureFusionBlock(features)
        self.scratch.refinenet2 = FeatureFusionBlock(features)
        self.scratch.refinenet3 = FeatureFusionBlock(features)
        self.scratch.refinenet4 = FeatureFusionBlock(features, has_residual=False)
        if feature_only:
            self.scratch.output_conv1 = nn.Conv2d(features, features, 3, padding=1)
        else:
            self.scratch.output_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
            self.scratch.output_conv2 = nn.Sequential(nn.Conv2d(features // 2, 32, 3, padding=1), nn.ReLU(inplace=True),
                                                      nn.Conv2d(32, output_dim, 1))

    def forward(self, tokens: dict[int, Tensor], images: Tensor, patch_start_idx: int,
                frames_chunk_size: int | None = 8):
        S = images.shape[1]
        if frames_chunk_size is None or frames_chunk_size >= S:
            return self._forward(tokens, images, patch_start_idx, 0, S)
        parts = [self._forward(tokens, images, patch_start_idx, i, min(i + frames_chunk_size, S))
                 for i in range(0, S, frames_chunk_size)]
        if self.feature_only:
            return torch.cat(parts, dim=1)
        return torch.cat([p[0] for p in parts], dim=1), torch.cat([p[1] for p in parts], dim=1)

    def _embed(self, x: Tensor, W: int, H: int, ratio: float = 0.1) -> Tensor:
        emb = uv_embedding(x.shape[-1], x.shape[-2], x.shape[1], W / H, x.dtype, x.device) * ratio
        return x + emb[None]

    def _forward(self, tokens: dict[int, Tensor], images: Tensor, patch_start_idx: int, s0: int, s1: int):
        B, _, _, H, W = images.shape
        S = s1 - s0
        ph, pw = H // self.patch_size, W // self.patch_size
        feats = []
        for j, layer in enumerate(self.intermediate_layer_idx):
            x = tokens[layer][:, s0:s1, patch_start_idx:]  # [B, S, h*w, C]
            x = self.norm(x.reshape(B * S, -1, x.shape[-1]))
            x = x.permute(0, 2, 1).reshape(B * S, x.shape[-1], ph, pw)
            x = self.projects[j](x)
            if self.pos_embed:
                x = self._embed(x, W, H)
            feats.append(self.resize_layers[j](x))
        out = self._fuse(feats)
        out = interpolate(out, (int(ph * self.patch_size / self.down_ratio), int(pw * self.patch_size / self.down_ratio)),
                          mode="bilinear", align_corners=True)
        if self.pos_embed:
            out = self._embed(out, W, H)
        if self.feature_only:
            return out.view(B, S, *out.shape[1:])
        vals, conf = activate(self.scratch.output_conv2(out), self.activation, self.conf_activation)
        return vals.view(B, S, *vals.shape[1:]), conf.view(B, S, *conf.shape[1:])

    def _fuse(self, feats: list[Tensor]) -> Tensor:
        sc = self.scratch
        l1, l2, l3, l4 = sc.layer1_rn(feats[0]), sc.layer2_rn(feats[1]), sc.layer3_rn(feats[2]), sc.layer4_rn(feats[3])
        out = sc.refinenet4(l4, size=l3.shape[2:])
        out = sc.refinenet3(out, l3, size=l2.shape[2:])
        out = sc.refinenet2(out, l2, size=l1.shape[2:])
        out = sc.refinenet1(out, l1)
        return sc.output_conv1(out)
