"""Similarity-preserving pairwise loss (spec §3.2, ``SP_KD_Loss``)."""
import torch
import torch.nn.functional as F

__all__ = ['sp_loss_sum']


def sp_loss_sum(aux_rows: torch.Tensor, aux_cols: torch.Tensor,
                target_gram: torch.Tensor) -> torch.Tensor:
    """Sum of squared differences of row-normalised Gram matrices.

    For auxiliary branch ``c`` over its samples ``idx_c`` (labels != c):
    ``G_aux = A Aᵀ`` of the auxiliary logits and the target sub-Gram
    ``(h hᵀ)[idx_c][:, idx_c]`` of the target BN-neck features; each row of
    both is L2-normalised, and ``MSE`` is the mean over the ``|idx_c|^2``
    entries, i.e. this sum divided by ``|idx_c|^2``.

    The rows may be a part of the columns (the local rows of a global batch
    under DDP); each row is normalised over all its columns.

    Args:
        aux_rows (Tensor): Auxiliary logits of the rows (n, K-1).
        aux_cols (Tensor): Auxiliary logits of all columns (m, K-1).
        target_gram (Tensor): Target Gram block (n, m), not yet normalised.

    Returns:
        Tensor: Scalar sum of squared differences.
    """
    aux_gram = F.normalize(aux_rows @ aux_cols.t(), p=2, dim=1)
    target_gram = F.normalize(target_gram, p=2, dim=1)
    return (aux_gram - target_gram).pow(2).sum()
