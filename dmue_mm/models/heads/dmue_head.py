"""The DMUE multi-branch head.

The backbone's own last stage is the *target* branch; this head owns the
``K`` *auxiliary* branches (copies of that last stage, made by the backbone
adapter of :mod:`dmue_mm.models.utils.adapters`), the BN-neck shared by
every branch, the bias-free classifiers and the uncertainty MLP. Its loss
module, :class:`~dmue_mm.models.losses.DMUELoss`, computes the four terms.

One training step (``docs/head.md`` lists it call by call): the classifier
runs the trunk and hands its output to :meth:`DMUEHead.loss`, which runs
every branch in the original's order (:meth:`DMUEHead.forward_branches`)
and gives the outputs to the loss module.
"""
from dataclasses import dataclass
from itertools import chain
from typing import Dict, Iterator, List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.models.heads import ClsHead
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from ..utils import BackboneAdapter, StageInput
from .batch_gather import BatchGather
from .class_layout import ClassLayout

__all__ = [
    'DMUEHead', 'BranchOutputs', 'DMUETerms', 'class_similarity_features'
]

#: keys that moved from the head into its loss config
_LOSS_KEYS = ('soft_weight', 'sp_weight', 'temperature', 'ramp_a')


@dataclass
class BranchOutputs:
    """What the branches produce for the loss (batch order throughout).

    Attributes:
        target_logits (Tensor): ``z`` (B, K).
        uncertainty (Tensor): The score ``sigma`` (B,).
        soft_targets (Tensor): Latent distributions ``L`` (B, K), detached.
        aux_logits (List[Tensor]): ``A_c`` (n_c, K-1) of every branch ``c``
            on the rows with label != c.
        neck_feats (Tensor): ``h``, BN-neck output of the target (B, D).
    """
    target_logits: torch.Tensor
    uncertainty: torch.Tensor
    soft_targets: torch.Tensor
    aux_logits: List[torch.Tensor]
    neck_feats: torch.Tensor


@dataclass
class DMUETerms:
    """The DMUE quantities of one batch
    (:meth:`~dmue_mm.models.classifiers.DMUEClassifier.compute_terms`).

    Attributes:
        target_logits (Tensor): ``z`` (B, K).
        uncertainty (Tensor): ``sigma`` (B,).
        soft_targets (Tensor): ``L`` (B, K).
        aux_logits (List[Tensor]): Branch ``c``'s logits on the rows with
            label != c, in batch order, (n_c, K-1).
        wce, soft, sp, aux (Tensor): The unweighted scalar terms.
    """
    target_logits: torch.Tensor
    uncertainty: torch.Tensor
    soft_targets: torch.Tensor
    aux_logits: List[torch.Tensor]
    wce: torch.Tensor
    soft: torch.Tensor
    sp: torch.Tensor
    aux: torch.Tensor


def class_similarity_features(feats: torch.Tensor,
                              all_feats: torch.Tensor,
                              all_labels: torch.Tensor,
                              num_classes: int,
                              eps: float = 1e-12) -> torch.Tensor:
    """Min-max scaled class-mean cosine similarities, the input of the
    uncertainty MLP.

    ``m_i[c]`` is the mean cosine similarity between sample ``i`` and the
    samples of class ``c`` (its own column included, so the self-similarity
    1 enters the mean of its own class); each row is then min-max scaled
    over the classes. On a batch where every class is present and the means
    differ that is the released formula exactly (the cosine uses
    ``F.normalize``'s 1e-12 floor). Degenerate batches get finite values: a
    class absent from the batch takes the row minimum (scaled value 0), and
    a row whose class means are all equal scales to 0.

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


@MODELS.register_module()
class DMUEHead(ClsHead):
    """Latent distribution mining + pairwise uncertainty estimation head.

    Parts (their parameter names are documented in ``docs/head.md``):

    * ``branches.{c}``: auxiliary branch ``c`` (``c = 0..K-1``), a copy of
      the backbone's last stage that never sees class ``c``;
    * ``bnneck``: ``BatchNorm1d(D)`` shared by every branch (absent with
      ``bnneck=False``);
    * ``aux_fcs.{c}``: bias-free ``Linear(D, K-1)`` of branch ``c``;
    * ``fc``: bias-free ``Linear(D, K)`` of the target branch;
    * ``uncertainty_mlp``: ``Linear(2K, K) -> PReLU -> Linear(K, 1)``,
      followed by a sigmoid.

    Inference (:meth:`pre_logits`, :meth:`forward`, :meth:`predict`) reads
    the target feature ``f`` only, as any MMPretrain head; training
    (:meth:`loss`) reads the trunk output, which every branch needs.

    Args:
        num_classes (int): ``K`` (at least 2).
        in_channels (int): Feature width ``D``; the classifier fills it from
            the backbone adapter.
        loss (dict): The loss module. Defaults to
            ``dict(type='DMUELoss')`` (its keys: ``soft_weight``,
            ``sp_weight``, ``temperature``, ``ramp_a``).
        dropout (float): Dropout before the BN-neck on the auxiliary and
            target paths. Defaults to 0.5.
        bnneck (bool): Use the shared BN-neck. Defaults to True.
        global_stats (bool): Under DDP, compute the class-mean similarities,
            the Gram matrices and every mean over the global batch.
            Defaults to False (per-rank statistics, as the original).
        released_code (bool): Reproduce the released code, which never
            optimises the uncertainty MLP nor the BN-neck affine parameters:
            they are frozen at their initial values (the neck's running
            statistics still update). Defaults to False (the paper: they
            train).
        init_std (float): Std of the normal init of the classifiers.
            Defaults to 0.001.
        init_cfg (dict, optional): MMEngine init config.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 loss: Union[dict, nn.Module] = dict(type='DMUELoss'),
                 dropout: float = 0.5,
                 bnneck: bool = True,
                 global_stats: bool = False,
                 released_code: bool = False,
                 init_std: float = 0.001,
                 init_cfg: Optional[dict] = None,
                 **kwargs):
        moved = [key for key in _LOSS_KEYS if key in kwargs]
        if moved:
            raise ValueError(
                f'model.head.{moved[0]} is a loss option: set '
                f'model.head.loss.{moved[0]} (loss=dict(type=\'DMUELoss\', '
                f'{moved[0]}=...))')
        if num_classes < 2:
            raise ValueError(f'model.head.num_classes must be >= 2, got '
                             f'{num_classes}')
        if in_channels is None or in_channels < 1:
            raise ValueError(f'model.head.in_channels must be positive, got '
                             f'{in_channels}')
        if not 0 <= dropout < 1:
            raise ValueError(f'model.head.dropout must be in [0, 1), got '
                             f'{dropout}')
        super().__init__(loss=loss, init_cfg=init_cfg, **kwargs)
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.global_stats = global_stats
        self.released_code = released_code
        self.adapter: Optional[BackboneAdapter] = None

        self.branches = nn.ModuleList()
        self.dropout = nn.Dropout(dropout)
        self.bnneck = nn.BatchNorm1d(in_channels) if bnneck else None
        self.aux_fcs = nn.ModuleList(
            nn.Linear(in_channels, num_classes - 1, bias=False)
            for _ in range(num_classes))
        self.fc = nn.Linear(in_channels, num_classes, bias=False)
        self.uncertainty_mlp = nn.Sequential(
            nn.Linear(2 * num_classes, num_classes), nn.PReLU(),
            nn.Linear(num_classes, 1))
        for layer in chain(self.aux_fcs, [self.fc]):
            nn.init.normal_(layer.weight, std=init_std)
        if released_code:
            frozen = chain(self.uncertainty_mlp.parameters(),
                           self.bnneck.parameters() if bnneck else ())
            for param in frozen:
                param.requires_grad_(False)

    # ------------------------------------------------------------------
    # branches
    # ------------------------------------------------------------------
    def attach(self, adapter: BackboneAdapter) -> None:
        """Create the auxiliary branches as copies of the backbone's last
        stage.

        Args:
            adapter (BackboneAdapter): The adapter bound to the backbone.
        """
        if adapter.feat_dim != self.in_channels:
            raise ValueError(
                f'model.head.in_channels={self.in_channels} does not match '
                f'the backbone feature width {adapter.feat_dim}: remove the '
                'key (the classifier fills it in) or fix it')
        self.adapter = adapter
        self.branches = nn.ModuleList(
            adapter.make_branch() for _ in range(self.num_classes))

    def copy_branches(self) -> None:
        """Re-copy the backbone's last stage into every auxiliary branch
        (after the backbone's ``init_weights``, so that pretrained weights
        initialise the target and every branch alike)."""
        source = self._require_adapter().target_stage
        for branch in self.branches:
            for key, module in source.items():
                branch[key].load_state_dict(module.state_dict())

    def _require_adapter(self) -> BackboneAdapter:
        if self.adapter is None:
            raise RuntimeError(
                'DMUEHead has no backbone adapter: build it inside '
                'DMUEClassifier, or call head.attach(adapter)')
        return self.adapter

    def classifier_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters of the classifier-side layers (``fc``, ``aux_fcs``,
        ``bnneck``, ``uncertainty_mlp``); the branches belong to the
        backbone side."""
        return chain(self.fc.parameters(), self.aux_fcs.parameters(),
                     self.uncertainty_mlp.parameters(),
                     self.bnneck.parameters() if self.bnneck else ())

    # ------------------------------------------------------------------
    # inference: target branch only
    # ------------------------------------------------------------------
    def _neck(self, x: torch.Tensor) -> torch.Tensor:
        """The BN-neck; a single sample in train mode uses the running
        statistics (batch statistics of one row are undefined)."""
        bn = self.bnneck
        if bn is None:
            return x
        if bn.training and x.size(0) < 2:
            return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight,
                                bn.bias, False, 0.0, bn.eps)
        return bn(x)

    def pre_logits(self, feats: Union[torch.Tensor, Sequence[torch.Tensor]]
                   ) -> torch.Tensor:
        """BN-neck output of the target feature ``f`` (no dropout)."""
        if not isinstance(feats, torch.Tensor):
            feats = feats[-1]
        return self._neck(feats)

    def forward(self, feats: Union[torch.Tensor, Sequence[torch.Tensor]]
                ) -> torch.Tensor:
        """Target logits ``z`` (B, K) from the target feature ``f``."""
        return self.fc(self.pre_logits(feats))

    # ------------------------------------------------------------------
    # training
    # ------------------------------------------------------------------
    def loss(self, feats: StageInput,
             data_samples: List[DataSample]) -> Dict[str, torch.Tensor]:
        """The DMUE losses of a batch.

        Args:
            feats (StageInput): Trunk output (input of the last stage).
            data_samples (List[DataSample]): With hard ``gt_label``.

        Returns:
            dict: See :meth:`DMUELoss.forward`.
        """
        batch = self._batch(_hard_labels(data_samples, feats.batch.device))
        out = self.forward_branches(feats, batch)
        with _float32(feats.batch):
            return self.loss_module(out, batch)

    def compute_terms(self, feats: StageInput,
                      labels: torch.Tensor) -> DMUETerms:
        """Every DMUE quantity of a batch, in the module's current mode.

        Args:
            feats (StageInput): Trunk output.
            labels (Tensor): Labels (B,).

        Returns:
            DMUETerms: Logits, score, latent distributions, auxiliary logits
            and the unweighted terms.
        """
        batch = self._batch(labels)
        out = self.forward_branches(feats, batch)
        with _float32(feats.batch):
            terms = self.loss_module.terms(out, batch)
        return DMUETerms(
            target_logits=out.target_logits,
            uncertainty=out.uncertainty,
            soft_targets=out.soft_targets,
            aux_logits=out.aux_logits,
            **terms)

    def _batch(self, labels: torch.Tensor) -> BatchGather:
        return BatchGather(labels, self.num_classes, self.global_stats)

    def forward_branches(self, feats: StageInput,
                         batch: BatchGather) -> BranchOutputs:
        """Run every branch on its rows of the batch.

        The calls follow the released code's order, which sets the running
        statistics of every batch-norm layer (they are an exponential
        average): (1) each auxiliary branch ``c`` on the rows with label
        != c, then dropout and the BN-neck; (2) the target branch, dropout
        and the BN-neck; (3) each branch ``c`` on the rows of class ``c``
        (latent distributions: no dropout, no gradient).

        The branches run under the caller's autocast; everything after them
        runs in float32.

        Args:
            feats (StageInput): Trunk output.
            batch (BatchGather): Labels of the (global) batch.

        Returns:
            BranchOutputs: Everything the loss needs, in batch order.
        """
        labels = batch.labels
        layout = ClassLayout(labels, self.num_classes)
        rows = feats.take(layout.order)  # one copy feeds every branch
        run = _StageRunner(self._require_adapter(), feats.batch)
        with _float32(feats.batch):
            aux_logits = [
                self._aux_logits(c, rows, layout, run)
                for c in range(self.num_classes)
            ]
            f = run(self.adapter.target_stage, feats)
            h = self._neck(self.dropout(f))
            target_logits = self.fc(h)
            uncertainty = self._uncertainty(f, batch)
            with torch.no_grad():
                soft_targets = self._soft_targets(rows, layout, labels, run)
        return BranchOutputs(
            target_logits=target_logits,
            uncertainty=uncertainty,
            soft_targets=soft_targets,
            aux_logits=aux_logits,
            neck_feats=h)

    def _aux_logits(self, c: int, rows: StageInput, layout: ClassLayout,
                    run: '_StageRunner') -> torch.Tensor:
        """``A_c``: branch ``c`` on the rows with label != c, dropout,
        BN-neck, ``aux_fcs[c]``; in batch order. With no such row the
        branch still joins the graph with a zero gradient, so DDP needs no
        ``find_unused_parameters``."""
        span = layout.others(c)
        if span[1] == 0:
            params = chain(self.branches[c].parameters(),
                           self.aux_fcs[c].parameters())
            anchor = sum(p.sum() for p in params if p.requires_grad) * 0.0
            return self.fc.weight.new_zeros(0, self.num_classes - 1) + anchor
        feats = run(self.branches[c], rows.narrow(*span))
        logits = self.aux_fcs[c](self._neck(self.dropout(feats)))
        return logits[layout.batch_order(span)]

    def _uncertainty(self, f: torch.Tensor,
                     batch: BatchGather) -> torch.Tensor:
        """The score ``sigma`` (B,) from the class-mean similarities of the
        target features (over the global batch) and the one-hot labels."""
        similarity = class_similarity_features(f, batch.gather(f),
                                               batch.all_labels,
                                               self.num_classes)
        onehot = F.one_hot(batch.labels, self.num_classes).to(f.dtype)
        mlp_input = torch.cat([similarity, onehot], dim=1)
        return torch.sigmoid(self.uncertainty_mlp(mlp_input)).squeeze(1)

    def _soft_targets(self, rows: StageInput, layout: ClassLayout,
                      labels: torch.Tensor,
                      run: '_StageRunner') -> torch.Tensor:
        """Latent distributions ``L`` (B, K): branch ``c`` on the samples
        of class ``c``, BN-neck without dropout, ``aux_fcs[c]``."""
        out = torch.zeros(labels.numel(), self.num_classes,
                          device=labels.device)
        for c in labels.unique().tolist():
            span = layout.members(c)
            feats = run(self.branches[c], rows.narrow(*span))
            logits = self.aux_fcs[c](self._neck(feats))
            out[layout.rows(span)] = self.loss_module.soft_targets(logits, c)
        return out


class _StageRunner:
    """Runs a last stage (target or branch) under the autocast state of the
    caller, returning a float32 feature; a single-sample call of a branch in
    train mode runs it in eval mode (batch statistics of one sample are
    undefined or degenerate).

    Args:
        adapter (BackboneAdapter): The adapter that runs the stage.
        like (Tensor): A tensor on the device of the batch.
    """

    def __init__(self, adapter: BackboneAdapter, like: torch.Tensor):
        device = like.device.type
        self.adapter = adapter
        self.autocast = dict(
            device_type=device,
            dtype=torch.get_autocast_dtype(device),
            enabled=torch.is_autocast_enabled(device))

    def __call__(self, stage: Union[nn.ModuleDict, Dict[str, nn.Module]],
                 rows: StageInput) -> torch.Tensor:
        single = (isinstance(stage, nn.Module) and stage.training
                  and rows.batch.size(0) < 2)
        if single:
            stage.eval()
        try:
            with torch.autocast(**self.autocast):
                return self.adapter.forward_stage(stage, rows).float()
        finally:
            if single:
                stage.train()


def _float32(like: torch.Tensor) -> torch.autocast:
    """Autocast off on the device of ``like``: the head layers and the
    losses run in float32, also under AMP."""
    return torch.autocast(like.device.type, enabled=False)


def _hard_labels(data_samples: List[DataSample],
                 device: torch.device) -> torch.Tensor:
    if not data_samples or 'gt_label' not in data_samples[0]:
        raise ValueError(
            'DMUE training needs hard labels (gt_label) in every data '
            'sample; batch augmentations that make soft labels (Mixup, '
            'CutMix) are not supported: remove model.train_cfg.augments')
    return torch.cat([s.gt_label for s in data_samples]).to(device).long()
