"""In-batch candidates for the retrieval distillation losses: the student's hardest negatives, or
random ones (DCD's official sampling)."""

from __future__ import annotations

import torch


def mine_candidates(similarity: torch.Tensor, positives: torch.Tensor, num_negatives: int) -> torch.Tensor:
    """(Q, 1 + K) column indices per query row of ``similarity`` (Q, G): the query's own column
    (``positives`` must mark it; the diagonal for in-batch pairs) first, then its K most similar
    non-positive columns, hardest first. K is ``num_negatives`` capped by the fewest negatives any
    row has (several captions of one image in a batch are positives of each other, not negatives)."""
    if similarity.shape != positives.shape or similarity.shape[0] > similarity.shape[1]:
        raise ValueError(f"mine_candidates: similarity {tuple(similarity.shape)} and positives "
                         f"{tuple(positives.shape)} must be the same (Q, G) shape with Q ≤ G")
    available = int((~positives).sum(1).min())
    k = min(int(num_negatives), available)
    if k < 1:
        raise ValueError("mine_candidates: some query has no negative in the batch (every row shows the same "
                         "image); use larger or more varied batches")
    masked = similarity.detach().float().masked_fill(positives, float("-inf"))
    negatives = masked.topk(k, dim=1).indices
    own = torch.arange(similarity.shape[0], device=similarity.device).view(-1, 1)
    return torch.cat([own, negatives], dim=1)


def sample_candidates(positives: torch.Tensor, num_negatives: int) -> torch.Tensor:
    """As :func:`mine_candidates`, but the K negatives are drawn uniformly at random, without
    replacement, from each row's non-positive columns (DCD's official candidates are random false
    captions, drawn from the whole dataset there, from the batch here)."""
    noise = torch.rand(positives.shape, device=positives.device)
    return mine_candidates(noise, positives, num_negatives)
