"""The DMUE losses: :class:`DMUELoss` and the formulas it is made of.

For a batch with labels ``y`` (``K`` classes), target logits ``z``, the
uncertainty score ``sigma``, the target BN-neck features ``h``, the latent
distributions ``L`` and the logits ``A_c`` of each auxiliary branch ``c`` on
the samples with label != c:

* ``wce = CE(sigma * z, y)``, the mean over the batch;
* ``soft = mean over B x K of (softmax(z) with column y set to 0 - L)^2``;
* ``aux = 1/K sum_c CE(A_c, y')``, ``y'`` the labels above ``c`` shifted
  down by one, each CE the mean over its own rows;
* ``sp = 1/K sum_c MSE(rownorm(A_c A_cᵀ), rownorm((h hᵀ)[idx_c, idx_c]))``,
  ``idx_c`` the rows of branch ``c`` (label != c);
* the loss is ``r_up (wce + w soft + gamma sp) + r_down aux`` with the ramp
  weights of the 0-based epoch ``e``.

Every mean is over the global batch when the head gathers statistics across
DDP ranks (:class:`~dmue_mm.models.heads.batch_gather.BatchGather`).
"""
import math
from typing import TYPE_CHECKING, Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import MessageHub
from mmpretrain.registry import MODELS

if TYPE_CHECKING:  # the head imports this module
    from ..heads.batch_gather import BatchGather
    from ..heads.dmue_head import BranchOutputs

__all__ = [
    'DMUELoss', 'current_epoch', 'ramp_up', 'ramp_down',
    'latent_distribution', 'soft_loss_sum', 'sp_loss_sum'
]


def current_epoch() -> int:
    """The 0-based epoch of the running training loop.

    Read from MMEngine's message hub (``RuntimeInfoHook`` stores it before
    each training epoch); 0 outside a runner.
    """
    epoch = MessageHub.get_current_instance().get_info('epoch')
    return 0 if epoch is None else int(epoch)


def _check_alpha(alpha: float) -> None:
    if not alpha > 0:
        raise ValueError(f'ramp_a must be positive, got {alpha}')


def ramp_up(epoch: float, alpha: float) -> float:
    """``exp(-5 (1 - e/alpha)^2)`` for ``e <= alpha``, else 1.

    Args:
        epoch (float): 0-based epoch index.
        alpha (float): Ramp length (``ramp_a``).

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
        alpha (float): Ramp length (``ramp_a``).

    Returns:
        float: The weight of the auxiliary cross-entropy; it decays slowly
        and never reaches 0.
    """
    _check_alpha(alpha)
    if epoch < alpha:
        return 1.0
    return math.exp(-(1.0 - alpha / epoch)**2)


def latent_distribution(aux_logits: torch.Tensor, class_index: int,
                        temperature: float) -> torch.Tensor:
    """Latent label distribution from auxiliary branch ``c``'s logits.

    ``q = softmax(s)^(1/T)`` renormalised (T > 1 flattens it a little), then
    a 0 is inserted at position ``c``: the result sums to 1 over the K-1
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
    """Sum of ``(softmax(z) * (1 - onehot(y)) - L)^2`` over the batch.

    ``soft`` is this sum divided by ``B * K``.

    Args:
        target_logits (Tensor): Un-attenuated target logits ``z`` (B, K).
        labels (Tensor): Labels (B,).
        distributions (Tensor): Latent distributions ``L`` (B, K), detached.

    Returns:
        Tensor: The scalar sum.
    """
    probs = F.softmax(target_logits, dim=1)
    masked = probs.scatter(1, labels.view(-1, 1), 0.0)
    return (masked - distributions).pow(2).sum()


def sp_loss_sum(aux_rows: torch.Tensor, aux_cols: torch.Tensor,
                target_gram: torch.Tensor) -> torch.Tensor:
    """Sum of squared differences of row-normalised Gram matrices.

    For branch ``c``: ``G_aux = A Aᵀ`` of its logits and the target block
    ``(h hᵀ)[idx_c][:, idx_c]``, each row L2-normalised (``F.normalize``);
    the MSE of ``sp`` is this sum divided by ``|idx_c|^2``. The rows may be
    a part of the columns (the local rows of a global batch under DDP); each
    row is normalised over all its columns.

    Args:
        aux_rows (Tensor): Auxiliary logits of the rows (n, K-1).
        aux_cols (Tensor): Auxiliary logits of all columns (m, K-1).
        target_gram (Tensor): Target Gram block (n, m), not normalised.

    Returns:
        Tensor: The scalar sum.
    """
    aux_gram = F.normalize(aux_rows @ aux_cols.t(), p=2, dim=1)
    target_gram = F.normalize(target_gram, p=2, dim=1)
    return (aux_gram - target_gram).pow(2).sum()


@MODELS.register_module()
class DMUELoss(nn.Module):
    """The four DMUE loss terms and their ramped weighting.

    Each term method returns its own (global-batch) mean; :meth:`forward`
    weights them for the optimiser and adds what is worth logging.

    Args:
        soft_weight (float): ``w``, weight of the soft loss. Defaults to 0.5.
        sp_weight (float): ``gamma``, weight of the similarity-preserving
            loss. Defaults to 1000 (tuned for 512-d ResNet-18 features at
            224x224; for small models keep ``sp_weight * sp`` near 0.1 at the
            start).
        temperature (float): ``T`` of the latent distributions.
            Defaults to 1.2.
        ramp_a (float): ``alpha`` of the ramps. Defaults to 6 (AffectNet;
            RAF-DB 10, FERPlus 10/12/14).
    """

    def __init__(self,
                 soft_weight: float = 0.5,
                 sp_weight: float = 1000.0,
                 temperature: float = 1.2,
                 ramp_a: float = 6.0):
        super().__init__()
        for name, value in (('temperature', temperature), ('ramp_a', ramp_a)):
            if not value > 0:
                raise ValueError(f'model.head.loss.{name} must be positive, '
                                 f'got {value}')
        for name, value in (('soft_weight', soft_weight),
                            ('sp_weight', sp_weight)):
            if value < 0:
                raise ValueError(f'model.head.loss.{name} must be >= 0, got '
                                 f'{value}')
        self.soft_weight = soft_weight
        self.sp_weight = sp_weight
        self.temperature = temperature
        self.ramp_a = ramp_a

    def soft_targets(self, latent_logits: torch.Tensor,
                     class_index: int) -> torch.Tensor:
        """Latent distributions (n, K) of the samples of class ``c`` from
        branch ``c``'s logits (n, K-1), with this loss's temperature."""
        return latent_distribution(latent_logits, class_index,
                                   self.temperature)

    def wce(self, out: 'BranchOutputs', batch: 'BatchGather') -> torch.Tensor:
        """Cross-entropy of the attenuated target logits ``sigma * z``."""
        total = F.cross_entropy(out.uncertainty[:, None] * out.target_logits,
                                batch.labels, reduction='sum')
        return batch.mean(total, batch.total)

    def soft(self, out: 'BranchOutputs', batch: 'BatchGather') -> torch.Tensor:
        """Squared error of the masked target softmax against ``L``."""
        total = soft_loss_sum(out.target_logits, batch.labels,
                              out.soft_targets)
        return batch.mean(total, batch.total * out.target_logits.size(1))

    def aux(self, out: 'BranchOutputs', batch: 'BatchGather') -> torch.Tensor:
        """Mean over the branches of each branch's cross-entropy."""
        labels = batch.labels
        sums = []
        for c, logits in enumerate(out.aux_logits):
            rows = labels[labels != c]
            sums.append(
                F.cross_entropy(logits, rows - (rows > c).long(),
                                reduction='sum'))
        return batch.mean(torch.stack(sums), batch.branch_counts()).mean()

    def sp(self, out: 'BranchOutputs', batch: 'BatchGather') -> torch.Tensor:
        """Mean over the branches of the Gram-matrix MSE (rows and columns
        of branch ``c``: the samples with label != c)."""
        labels, all_labels = batch.labels, batch.all_labels
        gram = out.neck_feats @ batch.gather(out.neck_feats).t()
        sums = []
        for c, logits in enumerate(out.aux_logits):
            columns = all_labels != c
            all_logits = batch.gather(logits, batch.rank_counts(columns))
            sums.append(
                sp_loss_sum(logits, all_logits,
                            gram[labels != c][:, columns]))
        return batch.mean(torch.stack(sums),
                          batch.branch_counts()**2).mean()

    def terms(self, out: 'BranchOutputs',
              batch: 'BatchGather') -> Dict[str, torch.Tensor]:
        """The unweighted terms ``wce``, ``soft``, ``sp``, ``aux``."""
        return dict(
            wce=self.wce(out, batch),
            soft=self.soft(out, batch),
            sp=self.sp(out, batch),
            aux=self.aux(out, batch))

    def forward(self,
                out: 'BranchOutputs',
                batch: 'BatchGather',
                epoch: Optional[int] = None) -> Dict[str, torch.Tensor]:
        """The loss dict of a batch.

        Args:
            out (BranchOutputs): What the head's branches produced.
            batch (BatchGather): Labels and reductions of the (global) batch.
            epoch (int, optional): 0-based epoch of the ramps. Defaults to
                the running epoch (:func:`current_epoch`).

        Returns:
            dict: ``loss_wce``, ``loss_soft``, ``loss_sp``, ``loss_aux``
            (weighted: their sum is what the optimiser minimises), the
            unweighted terms, the ramp weights ``ramp_up``/``ramp_down``
            and the uncertainty score's ``uncertainty_mean`` and
            ``uncertainty_std`` (logged only).
        """
        epoch = current_epoch() if epoch is None else epoch
        up, down = ramp_up(epoch, self.ramp_a), ramp_down(epoch, self.ramp_a)
        terms = self.terms(out, batch)
        score = out.uncertainty.detach()
        losses = dict(
            loss_wce=up * terms['wce'],
            loss_soft=up * self.soft_weight * terms['soft'],
            loss_sp=up * self.sp_weight * terms['sp'],
            loss_aux=down * terms['aux'])
        losses.update({name: value.detach() for name, value in terms.items()})
        losses.update(
            ramp_up=score.new_tensor(up),
            ramp_down=score.new_tensor(down),
            uncertainty_mean=score.mean(),
            uncertainty_std=score.std(unbiased=False))
        return losses
