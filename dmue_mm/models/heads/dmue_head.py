"""The DMUE multi-branch head (spec §1.2, §2, §3).

The backbone's own last stage is the *target* branch; this head owns the
``K`` *auxiliary* branches (copies of that last stage, see
:mod:`dmue_mm.models.utils.adapters`), the BN-neck shared by every branch,
the bias-free classifiers and the uncertainty MLP, and computes the four
loss terms.
"""
from functools import partial
from itertools import chain
from typing import (Callable, Dict, Iterator, List, NamedTuple, Optional,
                    Sequence, Tuple, Union)

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import MessageHub
from mmengine.model import BaseModule
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from ..losses import (latent_distribution, ramp_down, ramp_up,
                      soft_loss_sum, sp_loss_sum)
from ..utils import (BackboneAdapter, BatchGather, ClassLayout, LossPiece,
                     StageInput, early_backward)
from .pairwise_uncertainty import class_similarity_features

__all__ = ['DMUEHead', 'current_epoch']


def current_epoch() -> int:
    """The 0-based epoch of the running training loop.

    Read from MMEngine's message hub (``RuntimeInfoHook`` stores it before
    each training epoch); 0 outside a runner.
    """
    epoch = MessageHub.get_current_instance().get_info('epoch')
    return 0 if epoch is None else int(epoch)


class _AuxBatch(NamedTuple):
    """What every auxiliary branch reads of one batch."""
    branch_input: StageInput  # class-sorted trunk output (ClassLayout)
    layout: ClassLayout
    labels: torch.Tensor
    rank_layouts: List[ClassLayout]  # every rank's (global_stats)
    offsets: List[int]  # row offset of every rank in the global batch
    gather: BatchGather
    run_branch: Callable


@MODELS.register_module()
class DMUEHead(BaseModule):
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

    Args:
        num_classes (int): ``K`` (at least 2).
        in_channels (int): Feature width ``D``; the classifier fills it from
            the backbone adapter.
        soft_weight (float): ``w``, weight of the soft loss. Defaults to 0.5.
        temperature (float): ``T`` of the latent distributions.
            Defaults to 1.2.
        sp_weight (float): ``gamma``, weight of the similarity-preserving
            loss. Defaults to 1000 (tuned for 512-d ResNet-18 features at
            224x224; for small models keep ``sp_weight * L_sp`` near 0.1 at
            the start).
        ramp_a (float): ``alpha`` of the ramps. Defaults to 6 (AffectNet).
        dropout (float): Dropout before the BN-neck. Defaults to 0.5.
        bnneck (bool): Use the shared BN-neck. Defaults to True.
        global_stats (bool): Under DDP, compute the class-mean similarities
            and the Gram matrices over the global batch. Defaults to False
            (per-rank statistics, as the original).
        released_code (bool): Reproduce the released code, which never
            optimises the uncertainty MLP nor the BN-neck affine parameters:
            they are frozen at their initial values (the neck's running
            statistics still update). Defaults to False (the paper: they
            train).
        init_std (float): Std of the normal init of the classifiers.
            Defaults to 0.001.
        early_backward (bool): Backpropagate each auxiliary branch right
            after its forward pass, inside :meth:`loss` (same gradients,
            ~(K-1)/K less activation memory in the branches; the loss dict
            can then only be differentiated as a whole, as MMEngine does).
            Defaults to True.
        init_cfg (dict, optional): MMEngine init config.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 soft_weight: float = 0.5,
                 temperature: float = 1.2,
                 sp_weight: float = 1000.0,
                 ramp_a: float = 6.0,
                 dropout: float = 0.5,
                 bnneck: bool = True,
                 global_stats: bool = False,
                 released_code: bool = False,
                 init_std: float = 0.001,
                 early_backward: bool = True,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        _check_args(num_classes=num_classes, in_channels=in_channels,
                    temperature=temperature, ramp_a=ramp_a, dropout=dropout,
                    soft_weight=soft_weight, sp_weight=sp_weight)
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.soft_weight = soft_weight
        self.temperature = temperature
        self.sp_weight = sp_weight
        self.ramp_a = ramp_a
        self.global_stats = global_stats
        self.released_code = released_code
        self.early_backward = early_backward
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

    def predict(self,
                feats: Union[torch.Tensor, Sequence[torch.Tensor]],
                data_samples: Optional[List[Optional[DataSample]]] = None
                ) -> List[DataSample]:
        """Softmax scores and labels of the target branch; no labels needed.

        Args:
            feats (Tensor): Target features ``f`` (B, D).
            data_samples (List[DataSample], optional): Filled in if given.

        Returns:
            List[DataSample]: With ``pred_score`` and ``pred_label``.
        """
        scores = F.softmax(self(feats).float(), dim=1)
        labels = scores.argmax(dim=1, keepdim=True)
        if data_samples is None:
            data_samples = [None] * scores.size(0)
        return [(sample if sample is not None else DataSample()
                 ).set_pred_score(score).set_pred_label(label)
                for sample, score, label in zip(data_samples, scores, labels)]

    # ------------------------------------------------------------------
    # training
    # ------------------------------------------------------------------
    def loss(self, stage_input: StageInput, feats: torch.Tensor,
             data_samples: List[DataSample]) -> Dict[str, torch.Tensor]:
        """The DMUE losses of a batch.

        Args:
            stage_input (StageInput): Trunk output (input of the last stage).
            feats (Tensor): Target features ``f`` (B, D).
            data_samples (List[DataSample]): With hard ``gt_label``.

        Returns:
            dict: ``loss_wce``, ``loss_soft``, ``loss_sp``, ``loss_aux``
            (weighted: their sum is the spec's ``L``), the raw terms ``wce``,
            ``soft``, ``sp``, ``aux``, the ramp weights ``ramp_up``,
            ``ramp_down`` and the uncertainty score's ``uncertainty_mean``
            and ``uncertainty_std``.
        """
        labels = _hard_labels(data_samples, feats.device)
        epoch = current_epoch()
        up, down = ramp_up(epoch, self.ramp_a), ramp_down(epoch, self.ramp_a)
        terms, score = self.loss_terms(
            stage_input, feats, labels,
            term_weights=dict(aux=down, sp=up * self.sp_weight))
        losses = dict(
            loss_wce=up * terms['wce'],
            loss_soft=up * self.soft_weight * terms['soft'],
            loss_sp=up * self.sp_weight * terms['sp'],
            loss_aux=down * terms['aux'])
        losses.update({name: value.detach() for name, value in terms.items()})
        losses.update(
            ramp_up=score.new_tensor(up),
            ramp_down=score.new_tensor(down),
            uncertainty_mean=score.detach().mean(),
            uncertainty_std=score.detach().std(unbiased=False))
        return losses

    def loss_terms(self,
                   stage_input: StageInput,
                   feats: torch.Tensor,
                   labels: torch.Tensor,
                   term_weights: Optional[Dict[str, float]] = None
                   ) -> Tuple[Dict[str, torch.Tensor], torch.Tensor]:
        """The unweighted loss terms and the uncertainty score.

        The terms are computed in float32 (also under AMP; the branches run
        under the caller's autocast).

        Args:
            stage_input (StageInput): Trunk output.
            feats (Tensor): Target features ``f`` (B, D).
            labels (Tensor): Labels (B,).
            term_weights (dict, optional): ``dict(aux=..., sp=...)``, the
                weights the caller's loss gives the terms ``aux`` and ``sp``.
                With them (and ``early_backward``) the auxiliary branches are
                backpropagated during this call, so that only a multiple of
                that loss can be differentiated (see
                :mod:`dmue_mm.models.utils.loss_pieces`). Defaults to
                None: an ordinary graph.

        Returns:
            tuple: ``dict(wce, soft, sp, aux)`` of scalars and the score
            ``sigma`` (B, 1).
        """
        run_branch = self._branch_runner(feats.device.type)
        if not self.early_backward:
            term_weights = None
        with torch.autocast(feats.device.type, enabled=False):
            return self._loss_terms(stage_input, feats.float(), labels,
                                    run_branch, term_weights)

    def _branch_runner(self, device_type: str
                       ) -> Callable[[int, StageInput], torch.Tensor]:
        """Run auxiliary branch ``c`` under the caller's autocast state;
        a single-sample call runs the branch in eval mode."""
        enabled = torch.is_autocast_enabled(device_type)
        dtype = torch.get_autocast_dtype(device_type)
        adapter = self._require_adapter()

        def run(c: int, inputs: StageInput) -> torch.Tensor:
            branch = self.branches[c]
            # batch statistics of a single sample are undefined (1x1 maps)
            # or degenerate: such a call uses the running statistics
            single = branch.training and inputs.batch.size(0) < 2
            if single:
                branch.eval()
            try:
                with torch.autocast(device_type, dtype=dtype,
                                    enabled=enabled):
                    feats = adapter.forward_stage(branch, inputs)
            finally:
                if single:
                    branch.train()
            return feats.float()

        return run

    def _loss_terms(self, inputs: StageInput, f: torch.Tensor,
                    labels: torch.Tensor, run_branch: Callable,
                    term_weights: Optional[Dict[str, float]]
                    ) -> Tuple[Dict[str, torch.Tensor], torch.Tensor]:
        K = self.num_classes
        gather = BatchGather(self.global_stats)
        all_labels, sizes = gather.gather_labels(labels)
        counts = torch.bincount(all_labels, minlength=K)
        total = all_labels.numel()

        # target branch: f -> dropout -> BN-neck -> h -> fc -> z
        h = self._neck(self.dropout(f))
        z = self.fc(h)

        # pairwise uncertainty: sigma scales the target logits
        similarity = class_similarity_features(f, gather.gather(f, sizes),
                                               all_labels, K)
        onehot = F.one_hot(labels, K).to(f.dtype)
        score = torch.sigmoid(
            self.uncertainty_mlp(torch.cat([similarity, onehot], dim=1)))
        wce_sum = F.cross_entropy(score * z, labels, reduction='sum')

        # one class-sorted copy of the trunk output feeds every branch
        layout = ClassLayout(labels, K)
        branch_input = inputs.take(layout.order)

        # latent distributions (detached targets) and the soft loss
        distributions = self._latent_distributions(branch_input, layout,
                                                   labels, run_branch)
        soft_sum = soft_loss_sum(z, labels, distributions)

        # auxiliary branches: CE on labels != c, and the SP loss against
        # the target Gram matrix (global columns under global_stats)
        target_gram = h @ gather.gather(h, sizes).t()
        rank_layouts, offsets = self._rank_layouts(layout, all_labels, sizes)
        aux = _AuxBatch(branch_input, layout, labels, rank_layouts, offsets,
                        gather, run_branch)
        branch_counts = (total - counts).to(f.dtype)
        weights = None
        if term_weights is not None:  # d loss / d (aux_c sum, sp_c sum)
            scales = gather.mean_scale(
                torch.stack([branch_counts, branch_counts**2], dim=1))
            weights = (scales * scales.new_tensor(
                [term_weights['aux'], term_weights['sp']]) / K).flatten()
        sums = self._auxiliary_sums(aux, target_gram, weights).view(K, 2)

        means = gather.means(
            torch.cat([wce_sum.view(1), soft_sum.view(1), sums[:, 0],
                       sums[:, 1]]),
            torch.cat([
                f.new_tensor([total, total * K]), branch_counts,
                branch_counts**2
            ]))
        terms = dict(
            wce=means[0],
            soft=means[1],
            sp=means[2 + K:].mean(),
            aux=means[2:2 + K].mean())
        return terms, score

    def _auxiliary_sums(self, aux: '_AuxBatch', target_gram: torch.Tensor,
                        weights: Optional[torch.Tensor]) -> torch.Tensor:
        """``[aux_0, sp_0, aux_1, sp_1, ...]``: the CE and SP sums of every
        auxiliary branch (2K,). With ``weights`` (the loss's weight of each
        sum) every branch is backpropagated right after its forward pass
        (:func:`early_backward`), so that one branch's activations are alive
        at a time."""
        neck = list(self.bnneck.parameters()) if self.bnneck else []
        pieces = [
            LossPiece(
                fn=partial(self._branch_sums, c, aux),
                spans=(aux.layout.others(c), None),
                params=[
                    *self.branches[c].parameters(),
                    *self.aux_fcs[c].parameters(), *neck
                ]) for c in range(self.num_classes)
        ]
        inputs = (aux.branch_input.batch, target_gram)
        if weights is None:
            return torch.cat([p.fn(*p.inputs(inputs)) for p in pieces])
        return early_backward(pieces, weights, inputs)

    def _branch_sums(self, c: int, aux: '_AuxBatch', rows_input: torch.Tensor,
                     target_gram: torch.Tensor) -> torch.Tensor:
        """CE sum and SP sum (2,) of auxiliary branch ``c`` on its rows of
        the class-sorted trunk output (labels != c)."""
        span = aux.layout.others(c)
        rows = aux.layout.rows(span)
        logits = self._aux_logits(c, aux.branch_input.with_batch(rows_input),
                                  aux.run_branch)
        targets = aux.labels[rows] - (aux.labels[rows] > c).long()
        ce = F.cross_entropy(logits, targets, reduction='sum')
        columns = torch.cat([
            part.rows(part.others(c)) + offset
            for part, offset in zip(aux.rank_layouts, aux.offsets)
        ])
        all_logits = aux.gather.gather(
            logits, [part.others(c)[1] for part in aux.rank_layouts])
        sp = sp_loss_sum(logits, all_logits, target_gram[rows][:, columns])
        return torch.stack([ce, sp])

    def _rank_layouts(self, layout: ClassLayout, all_labels: torch.Tensor,
                      sizes: List[int]
                      ) -> Tuple[List[ClassLayout], List[int]]:
        """Layouts and row offsets of every rank's part of the global
        batch (just this batch's layout without gathering)."""
        if len(sizes) == 1:
            return [layout], [0]
        parts = all_labels.split(sizes)
        offsets = [sum(sizes[:r]) for r in range(len(sizes))]
        return [ClassLayout(p, self.num_classes) for p in parts], offsets

    def _aux_logits(self, c: int, rows: StageInput,
                    run_branch: Callable) -> torch.Tensor:
        """Logits ``A_c`` of branch ``c`` on ``rows`` (dropout, BN-neck,
        ``aux_fcs[c]``). With no row the branch still joins the graph with a
        zero gradient, so DDP needs no ``find_unused_parameters``."""
        if rows.batch.size(0) == 0:
            params = chain(self.branches[c].parameters(),
                           self.aux_fcs[c].parameters())
            anchor = sum(p.sum() for p in params if p.requires_grad) * 0.0
            return self.fc.weight.new_zeros(0, self.num_classes - 1) + anchor
        feats = run_branch(c, rows)
        return self.aux_fcs[c](self._neck(self.dropout(feats)))

    @torch.no_grad()
    def _latent_distributions(self, branch_input: StageInput,
                              layout: ClassLayout, labels: torch.Tensor,
                              run_branch: Callable) -> torch.Tensor:
        """Latent distributions ``L`` (B, K): branch ``c`` on the samples of
        class ``c``, without dropout, no gradient. Running BN statistics are
        updated as in the original."""
        out = torch.zeros(labels.numel(), self.num_classes,
                          device=labels.device)
        for c in labels.unique().tolist():
            span = layout.members(c)
            feats = run_branch(c, branch_input.narrow(*span))
            logits = self.aux_fcs[c](self._neck(feats))
            out[layout.rows(span)] = latent_distribution(
                logits, c, self.temperature)
        return out


def _hard_labels(data_samples: List[DataSample],
                 device: torch.device) -> torch.Tensor:
    if not data_samples or 'gt_label' not in data_samples[0]:
        raise ValueError(
            'DMUE training needs hard labels (gt_label) in every data '
            'sample; batch augmentations that make soft labels (Mixup, '
            'CutMix) are not supported: remove model.train_cfg.augments')
    return torch.cat([s.gt_label for s in data_samples]).to(device).long()


def _check_args(num_classes: int, in_channels: int, temperature: float,
                ramp_a: float, dropout: float, soft_weight: float,
                sp_weight: float) -> None:
    if num_classes < 2:
        raise ValueError(f'model.head.num_classes must be >= 2, got '
                         f'{num_classes}')
    if in_channels is None or in_channels < 1:
        raise ValueError(f'model.head.in_channels must be positive, got '
                         f'{in_channels}')
    for name, value in (('temperature', temperature), ('ramp_a', ramp_a)):
        if not value > 0:
            raise ValueError(f'model.head.{name} must be positive, got '
                             f'{value}')
    for name, value in (('soft_weight', soft_weight),
                        ('sp_weight', sp_weight)):
        if value < 0:
            raise ValueError(f'model.head.{name} must be >= 0, got {value}')
    if not 0 <= dropout < 1:
        raise ValueError(f'model.head.dropout must be in [0, 1), got '
                         f'{dropout}')
