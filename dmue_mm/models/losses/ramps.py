"""Ramp-up and ramp-down weights of the DMUE losses (spec §3.3).

``e`` is the 0-based epoch index and ``alpha`` the ramp length (``ramp_a``;
6 for AffectNet, 10 for RAF-DB). The weights change once per epoch.
"""
import math

__all__ = ['ramp_up', 'ramp_down']


def _check_alpha(alpha: float) -> None:
    if not alpha > 0:
        raise ValueError(f'ramp_a must be positive, got {alpha}')


def ramp_up(epoch: float, alpha: float) -> float:
    """``exp(-5 (1 - e/alpha)^2)`` for ``e <= alpha``, else 1.

    Args:
        epoch (float): 0-based epoch index.
        alpha (float): Ramp length.

    Returns:
        float: The weight of the target-branch losses (0.0067 at epoch 0).
    """
    _check_alpha(alpha)
    if epoch > alpha:
        return 1.0
    return math.exp(-5.0 * (1.0 - epoch / alpha)**2)


def ramp_down(epoch: float, alpha: float) -> float:
    """1 for ``e < alpha``, else ``exp(-(1 - alpha/e)^2)``.

    Args:
        epoch (float): 0-based epoch index.
        alpha (float): Ramp length.

    Returns:
        float: The weight of the auxiliary cross-entropy; it decays slowly and
        never reaches 0.
    """
    _check_alpha(alpha)
    if epoch < alpha:
        return 1.0
    return math.exp(-(1.0 - alpha / epoch)**2)
