from .face_resnet import FaceResNet
from .resnet_ibn import IBN, IBNBottleneck, ResNetIBN

__all__ = ['FaceResNet', 'IBN', 'IBNBottleneck', 'ResNetIBN']
