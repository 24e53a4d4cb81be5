"""FastVGGT training-free token merging in VGGT's global attention blocks (merge before, unmerge after).

What the official code does, per global block from ``first_block`` on (the plan is recomputed per block):

* destination (dst) tokens: every token of frame 0, the special tokens of every frame, and one random
  token per ``2 x 2`` patch region of frames 1..S-1 (fixed seed: the same pattern in every block);
* protected tokens: ``int(protected * N)`` tokens at an even stride over the whole sequence, never merged;
  they keep their own row in the merged sequence (a protected dst token has both: its dst row, which
  receives merges, and its own protected row, whose output it gets back);
* similarity: cosine of the block's post-norm1 hidden states; each unprotected source goes to its most
  similar dst; at most ``r = int(ratio * N)`` sources merge (the best matches), the rest stay as they are;
* q, k, v (after qk-norm and RoPE) are mean-reduced onto their dst rows; attention runs on the merged
  sequence; after the output projection every token copies its row's output back (unmerge).

Beyond the official code: any grid size (regions at odd borders are 1 wide), batch > 1 (matches per
sample), CPU and CUDA (the dst pattern is drawn on the CPU, so it is the same on both), the ratio /
first block / protected fraction as options, and ``proportional=True`` (ToMe proportional attention:
``log(size)`` added to the attention logits of merged rows).  With no merger the model is untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor


@dataclass(frozen=True)
class MergeConfig:
    """ratio: cap on merged sources as a fraction of all tokens (official 0.9; 0 = merging off);
    first_block: first global block that merges (official 0); protected: fraction of tokens kept
    unmerged at an even stride (official 0.1); region: (sy, sx) dst region size; seed: the dst pattern's;
    proportional: add log(token size) to the attention logits (ToMe)."""

    ratio: float = 0.9
    first_block: int = 0
    protected: float = 0.1
    region: tuple[int, int] = (2, 2)
    seed: int = 33
    proportional: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.ratio <= 1:
            raise ValueError(f"merge ratio {self.ratio} is not in [0, 1]")
        if not 0 <= self.protected < 1:
            raise ValueError(f"protected fraction {self.protected} is not in [0, 1)")
        if self.first_block < 0:
            raise ValueError(f"first merging block {self.first_block} is negative")


def dst_mask(S: int, P: int, special: int, grid: tuple[int, int], region: tuple[int, int] = (2, 2),
             seed: int = 33) -> Tensor:
    """``[S*P]`` bool: the destination tokens (module docstring), drawn with a CPU generator."""
    h, w = grid
    sy, sx = region
    mask = torch.zeros(S, P, dtype=torch.bool)
    mask[0] = True
    mask[:, :special] = True
    if S > 1:
        g = torch.Generator().manual_seed(seed)
        ry, rx = -(-h // sy), -(-w // sx)  # regions per column / row (partial ones at the border)
        uy = torch.rand(S - 1, ry, rx, generator=g)
        ux = torch.rand(S - 1, ry, rx, generator=g)
        y0 = torch.arange(ry)[:, None] * sy
        x0 = torch.arange(rx)[None, :] * sx
        hy = (h - y0).clamp(max=sy)  # region heights [ry, 1]
        wx = (w - x0).clamp(max=sx)  # region widths [1, rx]
        y = y0 + (uy * hy).long().clamp(max=sy - 1)  # [S-1, ry, rx]
        x = x0 + (ux * wx).long().clamp(max=sx - 1)
        y, x = torch.minimum(y, torch.tensor(h - 1)), torch.minimum(x, torch.tensor(w - 1))
        flat = (special + y * w + x).reshape(S - 1, -1)
        mask[1:].scatter_(1, flat, True)
    return mask.reshape(-1)


def protected_indices(N: int, fraction: float) -> Tensor:
    """``int(fraction * N)`` token indices at an even stride (the official choice), int64."""
    n = int(N * fraction)
    if n <= 0:
        return torch.zeros(0, dtype=torch.int64)
    step = max(1, N // n)
    return torch.arange(0, N, step)[:n]


class MergePlan:
    """One block's merge: rows ``[unmerged sources | dst | protected]`` of the merged sequence.

    base ``[N']`` int64: the token each row starts from; merged ``[B, m]`` token indices merged into
    rows ``rows [B, m]``; row_of ``[B, N]``: the row each token reads its output from; size ``[B, N']``.
    """

    def __init__(self, base: Tensor, merged: Tensor, rows: Tensor, row_of: Tensor, size: Tensor | None) -> None:
        self.base, self.merged, self.rows, self.row_of, self.size = base, merged, rows, row_of, size

    @property
    def length(self) -> int:
        return int(self.base.shape[-1])

    def _reduce_one(self, t: Tensor) -> Tensor:
        """``[B, H, N, D] -> [B, H, N', D]``: rows start from their base token, merged tokens mean in."""
        B, H, N, D = t.shape
        if self.base.ndim == 1:
            out = t.index_select(2, self.base)
        else:
            out = t.gather(2, self.base[:, None, :, None].expand(B, H, -1, D))
        if self.merged.shape[-1]:
            src = t.gather(2, self.merged[:, None, :, None].expand(B, H, -1, D))
            out = out.scatter_reduce(2, self.rows[:, None, :, None].expand(B, H, -1, D), src, reduce="mean")
        return out

    def reduce(self, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        bias = None
        if self.size is not None:
            bias = self.size.to(q.dtype).log()[:, None, None, :]  # [B, 1, 1, N']
        return self._reduce_one(q), self._reduce_one(k), self._reduce_one(v), bias

    def expand(self, out: Tensor) -> Tensor:
        """``[B, N', C] -> [B, N, C]`` (unmerge: each token copies its row)."""
        return out.gather(1, self.row_of[..., None].expand(-1, -1, out.shape[-1]))


def _best_dst(a: Tensor, b: Tensor, max_elems: int = 1 << 27) -> tuple[Tensor, Tensor]:
    """Cosine-normalised ``a [B, n, C]`` vs ``b [B, m, C]`` -> (best score ``[B, n]``, best dst ``[B, n]``), chunked."""
    B, n, _ = a.shape
    m = b.shape[1]
    chunk = max(1, min(n, max_elems // max(1, B * m)))
    bt = b.transpose(1, 2)
    best = torch.empty(B, n, dtype=torch.float32, device=a.device)
    idx = torch.empty(B, n, dtype=torch.int64, device=a.device)
    for i in range(0, n, chunk):
        s = torch.bmm(a[:, i:i + chunk], bt)  # [B, chunk, m]
        v, j = s.max(dim=2)
        best[:, i:i + chunk], idx[:, i:i + chunk] = v.float(), j
    return best, idx


class MergeContext:
    """The per-forward part of a merge: token roles for ``B, S, P`` (computed once for all blocks)."""

    def __init__(self, cfg: MergeConfig, B: int, S: int, P: int, special: int, grid: tuple[int, int], device) -> None:
        self.cfg, self.B, self.S, self.P = cfg, B, S, P
        N = S * P
        dst = dst_mask(S, P, special, grid, cfg.region, cfg.seed)
        prot = torch.zeros(N, dtype=torch.bool)
        pidx = protected_indices(N, cfg.protected)
        prot[pidx] = True
        self.N = N
        self.dst_idx = dst.nonzero()[:, 0].to(device)  # [n_dst]
        self.prot_idx = pidx.to(device)  # [n_prot]
        self.src_idx = (~dst & ~prot).nonzero()[:, 0].to(device)  # mergeable sources [n_src]
        self.r = min(int(N * cfg.ratio), int(self.src_idx.numel()))

    def for_block(self, block: int, stats: list | None = None):
        """The merge callable for global block ``block`` (None before ``first_block`` or with nothing to merge)."""
        if block < self.cfg.first_block or self.r <= 0:
            return None

        def plan(x: Tensor) -> MergePlan:
            p = self.plan(x)
            if stats is not None:
                stats.append({"block": block, "tokens": self.N, "merged_tokens": p.length,
                              "kept_per_frame": self.kept_per_frame(p)})
            return p

        return plan

    @torch.no_grad()
    def plan(self, x: Tensor) -> MergePlan:
        """x ``[B, N, C]`` (post-norm1 hidden states) -> this block's `MergePlan`."""
        B, N, _ = x.shape
        dev = x.device
        n_src, n_dst, n_prot = self.src_idx.numel(), self.dst_idx.numel(), self.prot_idx.numel()
        metric = x / x.norm(dim=-1, keepdim=True)
        score, best = _best_dst(metric[:, self.src_idx], metric[:, self.dst_idx])  # [B, n_src]
        if self.r < n_src:  # only the r best-matching sources merge; the others keep a row of their own
            order = score.argsort(dim=1, descending=True)
            merged_local, unm_local = order[:, :self.r], order[:, self.r:]
            n_unm = n_src - self.r
        else:
            merged_local = torch.arange(n_src, device=dev).expand(B, -1)
            unm_local = merged_local[:, :0]
            n_unm = 0
        merged = self.src_idx[merged_local]  # [B, m] token indices
        rows = n_unm + best.gather(1, merged_local)  # [B, m] their dst rows
        unm = self.src_idx[unm_local]  # [B, n_unm]
        fixed = torch.cat([self.dst_idx, self.prot_idx])  # the same for every sample
        base = torch.cat([unm, fixed.expand(B, -1)], dim=1) if n_unm else fixed
        L = n_unm + n_dst + n_prot
        row_of = torch.empty(B, N, dtype=torch.int64, device=dev)
        ar = torch.arange(L, device=dev)
        if n_unm:
            row_of.scatter_(1, unm, ar[:n_unm].expand(B, -1))
        row_of[:, self.dst_idx] = ar[n_unm:n_unm + n_dst]
        row_of.scatter_(1, merged, rows)
        row_of[:, self.prot_idx] = ar[n_unm + n_dst:]  # protected tokens (dst ones included) read their own row
        size = None
        if self.cfg.proportional:
            size = torch.ones(B, L, device=dev)
            size.scatter_add_(1, rows, torch.ones_like(rows, dtype=size.dtype))
        return MergePlan(base, merged, rows, row_of, size)

    def kept_per_frame(self, plan: MergePlan) -> list[int]:
        """Rows of the merged sequence per frame (sample 0): unmerged sources + dst + protected."""
        base = plan.base if plan.base.ndim == 1 else plan.base[0]
        return torch.bincount(base // self.P, minlength=self.S).tolist()


class TokenMerger:
    """What `Aggregator.forward` takes as ``merging``: a `MergeConfig` bound to one forward's sizes."""

    def __init__(self, cfg: MergeConfig | None = None) -> None:
        self.cfg = cfg or MergeConfig()

    def context(self, B: int, S: int, P: int, special: int, grid: tuple[int, int], device) -> MergeContext:
        return MergeContext(self.cfg, B, S, P, special, grid, device)


def merger(ratio: float = 0.9, first_block: int = 0, protected: float = 0.1,
           proportional: bool = False) -> Optional[TokenMerger]:
    """A `TokenMerger`, or None (the plain model) when ``ratio`` is 0."""
    if ratio <= 0:
        return None
    return TokenMerger(MergeConfig(ratio=ratio, first_block=first_block, protected=protected,
                                   proportional=proportional))


def tokens_kept(S: int, P: int, special: int, grid: tuple[int, int], cfg: MergeConfig | None = None) -> dict:
    """Merged sequence length at ratio ``cfg.ratio`` without running a model: {"tokens", "kept",
    "fraction", "per_frame" (rows per frame, when every unprotected source merges)}."""
    cfg = cfg or MergeConfig()
    ctx = MergeContext(cfg, 1, S, P, special, grid, "cpu")
    n_unm = ctx.src_idx.numel() - ctx.r
    kept = n_unm + ctx.dst_idx.numel() + ctx.prot_idx.numel()
    out = {"tokens": ctx.N, "kept": kept, "fraction": kept / ctx.N}
    if n_unm == 0:
        base = torch.cat([ctx.dst_idx, ctx.prot_idx])
        out["per_frame"] = torch.bincount(base // P, minlength=S).tolist()
    return out
