from .dmue_loss import (DMUELoss, current_epoch, latent_distribution,
                        ramp_down, ramp_up, soft_loss_sum, sp_loss_sum)

__all__ = [
    'DMUELoss', 'current_epoch', 'latent_distribution', 'ramp_down',
    'ramp_up', 'soft_loss_sum', 'sp_loss_sum'
]
