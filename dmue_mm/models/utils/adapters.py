"""Backbone adapters: how DMUE splits a backbone into trunk and last stage.

DMUE duplicates the last stage of the backbone: the backbone's own last stage
is the target branch and the head owns ``K`` copies of it (the auxiliary
branches). An adapter knows, for one backbone family,

* which modules form the last stage (:meth:`BackboneAdapter.stage_paths`),
* how to run the trunk, i.e. everything before the last stage
  (:meth:`BackboneAdapter.forward_trunk`: the backbone's own modules called
  in the order of its ``forward``, written out per family),
* how to run a copy of the last stage and pool its output to the feature
  ``f`` of shape (B, D) (:meth:`BackboneAdapter.forward_stage`),
* the feature width ``D`` and the stock neck a deploy model needs
  (:attr:`BackboneAdapter.deploy_neck`).

Adapters live in the MMEngine registry :data:`ADAPTERS`. They are found by
backbone class (``isinstance``) or picked explicitly with the classifier's
``adapter`` config key (a name from :func:`adapter_names`, or
``dict(type=name, **options)``). A new family registers its own with
``@ADAPTERS.register_module('name')``.
"""
import copy
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch
import torch.nn as nn
from mmengine.registry import Registry
from mmpretrain.models.backbones import (ConvNeXt, MobileNetV2, ResNet,
                                         ResNet_CIFAR, SwinTransformer,
                                         VisionTransformer)
from mmpretrain.models.utils import resize_pos_embed

__all__ = [
    'StageInput', 'BackboneAdapter', 'ResNetAdapter', 'ResNetCIFARAdapter',
    'MobileNetV2Adapter',
    'ConvNeXtAdapter', 'ViTAdapter', 'SwinAdapter', 'ADAPTERS',
    'build_adapter', 'adapter_names', 'stage_key'
]

#: The backbone adapters, by the name the classifier's ``adapter`` key uses.
ADAPTERS = Registry('DMUE backbone adapter')

GAP_NECK = dict(type='GlobalAveragePooling')


@dataclass
class StageInput:
    """The call arguments of the first last-stage module.

    ``args[0]`` is the batch tensor (batch first); the other arguments (for
    example Swin's ``hw_shape``) are the same for every sample.
    """
    args: Tuple[Any, ...]
    kwargs: Dict[str, Any] = field(default_factory=dict)

    @property
    def batch(self) -> torch.Tensor:
        """The batch tensor entering the last stage."""
        return self.args[0]

    def take(self, index: torch.Tensor) -> 'StageInput':
        """A copy of the rows ``index`` (1-D, long), in that order."""
        return self.with_batch(self.args[0].index_select(0, index))

    def narrow(self, start: int, length: int) -> 'StageInput':
        """The rows ``start:start + length`` as a view (no copy)."""
        return self.with_batch(self.args[0].narrow(0, start, length))

    def with_batch(self, rows: torch.Tensor) -> 'StageInput':
        """The same call with ``rows`` as the batch tensor."""
        return StageInput((rows, ) + tuple(self.args[1:]), dict(self.kwargs))


def _gap(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(2, 3))


def stage_key(path: str) -> str:
    """Name of a last-stage module inside a branch (``stages.3`` ->
    ``stages_3``; module names may not contain dots)."""
    return path.replace('.', '_')


class BackboneAdapter:
    """Base class: trunk/last-stage split of one backbone family.

    Args:
        backbone (nn.Module): The built backbone. Subclasses check that it is
            configured so that its output is the pooled last stage.
    """

    #: Backbone classes this adapter serves (``isinstance``).
    backbone_types: Tuple[type, ...] = ()
    #: Config of the stock MMPretrain neck of the deploy model (None: the
    #: backbone output is already a (B, D) vector).
    deploy_neck: Optional[dict] = GAP_NECK

    def __init__(self, backbone: nn.Module):
        self.backbone = backbone
        self.check()

    # -- family specific --------------------------------------------------
    def stage_paths(self) -> List[str]:
        """Dotted paths (in the backbone) of the last-stage modules, in
        call order."""
        raise NotImplementedError

    @property
    def feat_dim(self) -> int:
        """Width ``D`` of the pooled feature."""
        raise NotImplementedError

    def forward_trunk(self, inputs: torch.Tensor) -> StageInput:
        """Run the backbone up to (not including) its last stage: its own
        modules, called as its ``forward`` calls them.

        Args:
            inputs (Tensor): Images (B, 3, H, W).

        Returns:
            StageInput: The arguments of the last stage.
        """
        raise NotImplementedError

    def forward_stage(self, stage: Mapping[str, nn.Module],
                      inputs: StageInput) -> torch.Tensor:
        """Run a last stage (the backbone's or a copy) and pool.

        The default, for convolutional stages: the modules in call order,
        then global average pooling.

        Args:
            stage (Mapping[str, nn.Module]): The stage modules by
                :func:`stage_key`.
            inputs (StageInput): What the trunk produced.

        Returns:
            Tensor: The feature ``f`` of shape (B, D).
        """
        x = inputs.batch
        for module in stage.values():
            x = module(x)
        return _gap(x)

    def check(self) -> None:
        """Raise ValueError if the backbone config does not fit DMUE."""

    def _check_last_out_index(self, num_stages: int, option: str) -> None:
        out_indices = list(getattr(self.backbone, 'out_indices', []))
        if out_indices != [num_stages - 1]:
            raise ValueError(
                f'{type(self.backbone).__name__} for DMUE must output its '
                f'last stage only: set model.backbone.{option}, got '
                f'out_indices={out_indices}')

    # -- shared -----------------------------------------------------------
    @property
    def stage_keys(self) -> List[str]:
        """Names of the last-stage modules inside a branch."""
        return [stage_key(p) for p in self.stage_paths()]

    @property
    def target_stage(self) -> Dict[str, nn.Module]:
        """The backbone's own last-stage modules (the target branch)."""
        return {
            stage_key(p): self.backbone.get_submodule(p)
            for p in self.stage_paths()
        }

    def make_branch(self) -> nn.ModuleDict:
        """A fresh deep copy of the backbone's last stage."""
        return nn.ModuleDict({
            key: copy.deepcopy(module)
            for key, module in self.target_stage.items()
        })

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Trunk and target branch: the feature ``f`` (B, D)."""
        return self.forward_stage(self.target_stage,
                                  self.forward_trunk(inputs))


def adapter_names() -> List[str]:
    """Names accepted by the classifier's ``adapter`` key."""
    return sorted(ADAPTERS.module_dict)


def build_adapter(cfg: Union[None, str, dict],
                  backbone: nn.Module) -> BackboneAdapter:
    """Build the adapter of ``backbone``.

    Args:
        cfg (None | str | dict): None picks the adapter by backbone class;
            a name or ``dict(type=name, **options)`` picks one explicitly.
        backbone (nn.Module): The built backbone.

    Returns:
        BackboneAdapter: The adapter bound to ``backbone``.
    """
    if cfg is None:
        # the adapter of the nearest class in the backbone's MRO, so that a
        # subclass with its own forward (ResNet_CIFAR) gets its own adapter
        for base in type(backbone).__mro__:
            for cls in ADAPTERS.module_dict.values():
                if base in cls.backbone_types:
                    return cls(backbone)
        raise ValueError(
            f'no DMUE adapter knows the backbone '
            f'{type(backbone).__name__}: set model.adapter to one of '
            f'{adapter_names()} or register one with '
            '@dmue_mm.models.utils.ADAPTERS.register_module()')
    options = dict(type=cfg) if isinstance(cfg, str) else dict(cfg)
    if options.get('type') not in ADAPTERS.module_dict:
        raise ValueError(f'unknown model.adapter {options.get("type")!r}: '
                         f'choose one of {adapter_names()}')
    return ADAPTERS.build(options, default_args=dict(backbone=backbone))


@ADAPTERS.register_module('resnet')
class ResNetAdapter(BackboneAdapter):
    """MMPretrain's ``ResNet`` family and its subclasses (``ResNetV1c``,
    ``ResNetV1d``, the plugin's ``FaceResNet`` and ``ResNetIBN``): the last
    stage is the last residual layer (``layer4``), pooled by GAP."""
    backbone_types = (ResNet, )

    def check(self):
        self._check_last_out_index(len(self.backbone.res_layers),
                                   'out_indices')

    def stage_paths(self) -> List[str]:
        return [self.backbone.res_layers[-1]]

    def forward_stem(self, inputs: torch.Tensor) -> torch.Tensor:
        """The stem, as ``ResNet.forward`` runs it."""
        bb = self.backbone
        if bb.deep_stem:
            x = bb.stem(inputs)
        else:
            x = bb.relu(bb.norm1(bb.conv1(inputs)))
        return bb.maxpool(x)

    def forward_trunk(self, inputs):
        x = self.forward_stem(inputs)  # then every layer but the last
        for name in self.backbone.res_layers[:-1]:
            x = getattr(self.backbone, name)(x)
        return StageInput((x, ))

    @property
    def feat_dim(self) -> int:
        return self.backbone.feat_dim


@ADAPTERS.register_module('resnet_cifar')
class ResNetCIFARAdapter(ResNetAdapter):
    """MMPretrain's ``ResNet_CIFAR``: its stem (3x3 conv, no max-pooling)
    differs from ``ResNet.forward``'s; the rest is :class:`ResNetAdapter`."""
    backbone_types = (ResNet_CIFAR, )

    def forward_stem(self, inputs):
        bb = self.backbone  # as ResNet_CIFAR.forward
        return bb.relu(bb.norm1(bb.conv1(inputs)))


@ADAPTERS.register_module('mobilenet_v2')
class MobileNetV2Adapter(BackboneAdapter):
    """``MobileNetV2``: the last stage is ``layer7`` and the final 1x1 conv
    ``conv2``, pooled by GAP."""
    backbone_types = (MobileNetV2, )

    def check(self):
        self._check_last_out_index(len(self.backbone.layers), 'out_indices')

    def stage_paths(self) -> List[str]:
        return list(self.backbone.layers[-2:])

    def forward_trunk(self, inputs):
        bb = self.backbone  # as MobileNetV2.forward, up to layer7
        x = bb.conv1(inputs)
        for name in bb.layers[:-2]:
            x = getattr(bb, name)(x)
        return StageInput((x, ))

    @property
    def feat_dim(self) -> int:
        return self.backbone.out_channel


class _StagesAdapter(BackboneAdapter):
    """Backbones with a ``stages`` list and a ``norm{i}`` per output."""

    @property
    def _last(self) -> int:
        return len(self.backbone.stages) - 1

    def check(self):
        self._check_last_out_index(self._last + 1, 'out_indices')


@ADAPTERS.register_module('convnext')
class ConvNeXtAdapter(_StagesAdapter):
    """``ConvNeXt``: the last downsample layer, the last stage and the norm
    that follows; pooled before the norm when ``gap_before_final_norm``
    (the default, then the deploy model needs no neck)."""
    backbone_types = (ConvNeXt, )

    @property
    def deploy_neck(self):
        return None if self.backbone.gap_before_final_norm else GAP_NECK

    def stage_paths(self) -> List[str]:
        i = self._last
        return [f'downsample_layers.{i}', f'stages.{i}', f'norm{i}']

    @property
    def feat_dim(self) -> int:
        return self.backbone.channels[-1]

    def forward_trunk(self, inputs):
        bb, x = self.backbone, inputs  # as ConvNeXt.forward
        for i in range(self._last):
            x = bb.stages[i](bb.downsample_layers[i](x))
        return StageInput((x, ))

    def forward_stage(self, stage, inputs):
        i = self._last
        x = stage[f'stages_{i}'](stage[f'downsample_layers_{i}'](inputs.batch))
        norm = stage[f'norm{i}']
        if self.backbone.gap_before_final_norm:
            return norm(x.mean(dim=(2, 3), keepdim=True)).flatten(1)
        return _gap(norm(x))


@ADAPTERS.register_module('vit')
class ViTAdapter(BackboneAdapter):
    """``VisionTransformer`` (and subclasses such as DeiT): the last
    ``num_layers`` transformer layers and the final norm; the feature is the
    class token (``out_type='cls_token'``) or the mean patch token
    (``out_type='avg_featmap'``). The deploy model needs no neck.

    Args:
        backbone (nn.Module): The ViT.
        num_layers (int): How many final transformer layers form the last
            stage. Defaults to 1.
    """
    backbone_types = (VisionTransformer, )
    deploy_neck = None

    def __init__(self, backbone: nn.Module, num_layers: int = 1):
        if not 1 <= num_layers <= len(backbone.layers):
            raise ValueError(
                f'model.adapter.num_layers must be in [1, '
                f'{len(backbone.layers)}], got {num_layers}')
        self.num_layers = num_layers
        super().__init__(backbone)

    def check(self):
        if self.backbone.out_type not in ('cls_token', 'avg_featmap'):
            raise ValueError(
                "DMUE needs a pooled ViT feature: set model.backbone.out_type "
                f"to 'cls_token' or 'avg_featmap', got "
                f'{self.backbone.out_type!r}')
        self._check_last_out_index(len(self.backbone.layers), 'out_indices')

    def stage_paths(self) -> List[str]:
        total = len(self.backbone.layers)
        paths = [f'layers.{i}' for i in range(total - self.num_layers, total)]
        if self.backbone.final_norm:
            paths.append('ln1')
        if self.backbone.out_type == 'avg_featmap':
            paths.append('ln2')
        return paths

    @property
    def feat_dim(self) -> int:
        return self.backbone.embed_dims

    def forward_trunk(self, inputs):
        bb = self.backbone  # as VisionTransformer.forward
        x, patch_resolution = bb.patch_embed(inputs)
        if bb.cls_token is not None:
            x = torch.cat((bb.cls_token.expand(x.size(0), -1, -1), x), dim=1)
        x = x + resize_pos_embed(
            bb.pos_embed,
            bb.patch_resolution,
            patch_resolution,
            mode=bb.interpolate_mode,
            num_extra_tokens=bb.num_extra_tokens)
        x = bb.pre_norm(bb.drop_after_pos(x))
        for layer in bb.layers[:len(bb.layers) - self.num_layers]:
            x = layer(x)
        return StageInput((x, ))

    def forward_stage(self, stage, inputs):
        x = inputs.batch
        for key, module in stage.items():
            if key.startswith('layers_'):
                x = module(x)
        if self.backbone.final_norm:
            x = stage['ln1'](x)
        if self.backbone.out_type == 'cls_token':
            return x[:, 0]
        patch_tokens = x[:, self.backbone.num_extra_tokens:]
        return stage['ln2'](patch_tokens.mean(dim=1))


@ADAPTERS.register_module('swin')
class SwinAdapter(_StagesAdapter):
    """``SwinTransformer``: the last stage and its norm, pooled over the
    tokens (GAP)."""
    backbone_types = (SwinTransformer, )

    def stage_paths(self) -> List[str]:
        return [f'stages.{self._last}', f'norm{self._last}']

    @property
    def feat_dim(self) -> int:
        return self.backbone.num_features[-1]

    def forward_trunk(self, inputs):
        bb = self.backbone  # as SwinTransformer.forward
        x, hw_shape = bb.patch_embed(inputs)
        if bb.use_abs_pos_embed:
            x = x + resize_pos_embed(bb.absolute_pos_embed,
                                     bb.patch_resolution, hw_shape,
                                     bb.interpolate_mode,
                                     bb.num_extra_tokens)
        x = bb.drop_after_pos(x)
        after = bb.out_after_downsample
        for stage in bb.stages[:self._last]:
            x, hw_shape = stage(x, hw_shape, do_downsample=after)
            if stage.downsample is not None and not after:
                x, hw_shape = stage.downsample(x, hw_shape)
        return StageInput((x, hw_shape), dict(do_downsample=after))

    def forward_stage(self, stage, inputs):
        i = self._last
        x, _ = stage[f'stages_{i}'](*inputs.args, **inputs.kwargs)
        return stage[f'norm{i}'](x).mean(dim=1)
