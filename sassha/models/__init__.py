"""Models used by the named workloads.

Everything here supports double backward (Hessian-vector products by ``create_graph=True``):
attention is written with explicit matmul and softmax rather than fused kernels.
"""

from sassha.models.resnet_cifar import CifarResNet, WideResNet, cifar_resnet, wide_resnet
from sassha.models.small import MLP, DigitsCNN

__all__ = ["MLP", "CifarResNet", "DigitsCNN", "WideResNet", "cifar_resnet", "wide_resnet"]
