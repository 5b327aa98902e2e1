"""Inputs of the pairwise uncertainty estimation (spec §3.1)."""
import torch
import torch.nn.functional as F

__all__ = ['class_similarity_features']


def class_similarity_features(feats: torch.Tensor,
                              all_feats: torch.Tensor,
                              all_labels: torch.Tensor,
                              num_classes: int,
                              eps: float = 1e-12) -> torch.Tensor:
    """Min-max scaled class-mean cosine similarities.

    ``m_i[c]`` is the mean cosine similarity between sample ``i`` and the
    samples of class ``c`` (its own column included, so the self-similarity 1
    enters the mean of its own class); each row is then min-max scaled over
    the classes.

    Degenerate batches get finite values: a class absent from the batch takes
    the row minimum (scaled value 0, "least similar"), and a row whose class
    means are all equal (for example a batch of one class) scales to 0. On a
    batch where every class is present and the means differ the result is the
    spec's formula exactly (the cosine uses ``F.normalize``'s 1e-12 floor).

    Args:
        feats (Tensor): Target features ``f`` of the rows (B, D), before
            dropout and the BN-neck.
        all_feats (Tensor): Features of every sample of the (global) batch
            (N, D); ``feats`` itself when not gathering.
        all_labels (Tensor): Labels of the (global) batch (N,).
        num_classes (int): ``K``.
        eps (float): Floor of the min-max range.

    Returns:
        Tensor: (B, K) scaled similarities in [0, 1].
    """
    cos = F.normalize(feats, dim=1) @ F.normalize(all_feats, dim=1).t()
    onehot = F.one_hot(all_labels, num_classes).to(cos.dtype)
    counts = onehot.sum(dim=0)
    means = (cos @ onehot) / counts.clamp(min=1)
    absent = (counts == 0).unsqueeze(0)
    low = means.masked_fill(absent, float('inf')).amin(dim=1, keepdim=True)
    high = means.masked_fill(absent, float('-inf')).amax(dim=1, keepdim=True)
    scaled = (means - low) / (high - low).clamp(min=eps)
    return scaled.masked_fill(absent, 0.0)
