from .latent_distribution import latent_distribution, soft_loss_sum
from .ramps import ramp_down, ramp_up
from .similarity_preserving import sp_loss_sum

__all__ = [
    'latent_distribution', 'soft_loss_sum', 'ramp_down', 'ramp_up',
    'sp_loss_sum'
]
