"""The DMUE classifier: any MMPretrain backbone + :class:`DMUEHead`."""
from typing import List, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmpretrain.models.classifiers import ImageClassifier
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from ..heads import DMUETerms
from ..utils import BackboneAdapter, build_adapter

__all__ = ['DMUEClassifier']


@MODELS.register_module()
class DMUEClassifier(ImageClassifier):
    """Image classifier trained with DMUE.

    The backbone's own last stage is the target branch, so the backbone's
    state-dict keys stay those of the stock backbone; the head owns the
    auxiliary copies of that stage. Validation, test and predict run the
    trunk and the target branch only and need no labels.

    Args:
        backbone (dict): Any MMPretrain backbone config that an adapter
            knows (ResNet family incl. ``FaceResNet``/``ResNetIBN``,
            MobileNetV2, ConvNeXt, ViT, Swin); it must output its last stage
            only (``out_indices`` of the last stage).
        head (dict): ``dict(type='DMUEHead', num_classes=K, ...)``;
            ``in_channels`` is filled in from the backbone.
        adapter (str | dict, optional): Pick the backbone adapter explicitly
            (``'resnet'``, ``'mobilenet_v2'``, ``'convnext'``, ``'vit'``,
            ``'swin'`` or ``dict(type='vit', num_layers=2)``). Defaults to
            None: chosen by backbone class.
        pretrained (str, optional): Checkpoint of the whole model.
        train_cfg (dict, optional): As :class:`ImageClassifier`; soft-label
            batch augmentations are not supported.
        data_preprocessor (dict, optional): As :class:`ImageClassifier`.
        init_cfg (dict, optional): MMEngine init config.
    """

    def __init__(self,
                 backbone: dict,
                 head: dict,
                 adapter: Union[None, str, dict] = None,
                 pretrained: Optional[str] = None,
                 train_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        if not isinstance(backbone, nn.Module):
            backbone = MODELS.build(backbone)
        bound = build_adapter(adapter, backbone)
        if not isinstance(head, nn.Module):
            head = dict(head)
            head.setdefault('in_channels', bound.feat_dim)
            head = MODELS.build(head)
        super().__init__(
            backbone=backbone,
            neck=None,
            head=head,
            pretrained=pretrained,
            train_cfg=train_cfg,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg)
        self.adapter: BackboneAdapter = bound
        self.head.attach(bound)

    def init_weights(self) -> None:
        """Initialise every part, then copy the backbone's (possibly
        pretrained) last stage into each auxiliary branch."""
        super().init_weights()
        self.head.copy_branches()

    def extract_feat(self, inputs: torch.Tensor, stage: str = 'neck'
                     ) -> Union[torch.Tensor, Tuple[torch.Tensor]]:
        """Features of the target branch.

        Args:
            inputs (Tensor): Images (B, C, H, W).
            stage (str): ``'backbone'`` (the stock backbone output),
                ``'neck'`` (the pooled target feature ``f``, as a 1-tuple)
                or ``'pre_logits'`` (the BN-neck output).

        Returns:
            tuple | Tensor: The requested features.
        """
        if stage == 'backbone':
            return self.backbone(inputs)
        if stage not in ('neck', 'pre_logits'):
            raise ValueError(f'Invalid output stage {stage!r}: choose '
                             "'backbone', 'neck' or 'pre_logits'")
        feats = self.adapter.forward(inputs)
        return (feats, ) if stage == 'neck' else self.head.pre_logits(feats)

    def loss(self, inputs: torch.Tensor,
             data_samples: List[DataSample]) -> dict:
        """DMUE losses: the trunk output goes to the head, which runs every
        branch (see :meth:`DMUEHead.loss`).

        Args:
            inputs (Tensor): Images (B, C, H, W).
            data_samples (List[DataSample]): With hard ``gt_label``.

        Returns:
            dict: The weighted ``loss_*`` terms and logged values.
        """
        return self.head.loss(self.adapter.forward_trunk(inputs),
                              data_samples)

    def compute_terms(self, inputs: torch.Tensor,
                      labels: torch.Tensor) -> DMUETerms:
        """Every DMUE quantity of a batch, for inspecting the method.

        Runs in the module's current mode (``train()``: batch statistics
        and dropout, as a training step; ``eval()``: running statistics, no
        dropout) and needs no runner; wrap it in ``torch.no_grad()`` unless
        you want gradients. Ramp weights are not applied.

        Args:
            inputs (Tensor): Preprocessed images (B, C, H, W).
            labels (Tensor): Hard labels (B,).

        Returns:
            DMUETerms: ``target_logits`` (B, K), ``uncertainty`` (B,),
            ``soft_targets`` (B, K), ``aux_logits`` (K tensors, branch
            ``c``'s logits on the rows with label != c in batch order,
            (n_c, K-1)) and the unweighted scalar terms ``wce``, ``soft``,
            ``sp``, ``aux``.
        """
        labels = torch.as_tensor(labels, device=inputs.device).long()
        return self.head.compute_terms(self.adapter.forward_trunk(inputs),
                                       labels)
