"""Latent label distributions and the soft loss (spec §2.3, §3.2)."""
import torch
import torch.nn.functional as F

__all__ = ['latent_distribution', 'soft_loss_sum']


def latent_distribution(aux_logits: torch.Tensor, class_index: int,
                        temperature: float) -> torch.Tensor:
    """Latent label distribution from auxiliary branch ``c``'s logits.

    ``q = softmax(s)^(1/T)`` renormalised (T > 1 flattens it a little), then a
    0 is inserted at position ``c``: the result sums to 1 over the K-1
    non-ground-truth classes.

    Args:
        aux_logits (Tensor): Logits (n, K-1) of branch ``c`` for samples of
            class ``c``.
        class_index (int): The class ``c``.
        temperature (float): ``T`` (1.2 in the original).

    Returns:
        Tensor: (n, K) distributions with column ``c`` equal to 0.
    """
    if not temperature > 0:
        raise ValueError(f'temperature must be positive, got {temperature}')
    # softmax(s)^(1/T) renormalised is exactly softmax(s / T)
    q = F.softmax(aux_logits / temperature, dim=1)
    zero = q.new_zeros(q.size(0), 1)
    return torch.cat([q[:, :class_index], zero, q[:, class_index:]], dim=1)


def soft_loss_sum(target_logits: torch.Tensor, labels: torch.Tensor,
                  distributions: torch.Tensor) -> torch.Tensor:
    """Sum over the batch of the squared error between the masked target
    softmax and the latent distributions.

    ``L_soft`` is this sum divided by ``B * K`` (the mean over all entries).

    Args:
        target_logits (Tensor): Un-attenuated target logits ``z`` (B, K).
        labels (Tensor): Labels (B,).
        distributions (Tensor): Latent distributions ``L`` (B, K), detached.

    Returns:
        Tensor: Scalar sum of ``(softmax(z) * (1 - onehot) - L)^2``.
    """
    probs = F.softmax(target_logits, dim=1)
    masked = probs.scatter(1, labels.view(-1, 1), 0.0)
    return (masked - distributions).pow(2).sum()
