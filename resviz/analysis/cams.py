"""The CAM family: each method is one small function of a layer's activations and gradients.

As in pytorch-grad-cam, a CAM method only says how to weigh the channels (or the elements) of a
layer's activation ``A`` ``(N, C, h, w)`` given the gradient ``G = d y_target / d A`` of the same
shape; the hooks, the single forward + backward, the ReLU, upsampling and normalization are shared
(:func:`resviz.analysis.grad_cam.gradient_cams`). Every function returns the raw map ``(N, h, w)``
before the ReLU. The formulas follow pytorch-grad-cam 1.5 (its constants included) so the maps
can be tested against it; the papers are linked at each function.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

CamFunction = Callable[[Tensor, Tensor], Tensor]


def _weighted(weights: Tensor, act: Tensor) -> Tensor:
    """``sum_c w_c A_c``: ``(N, C)`` weights and ``(N, C, h, w)`` activations -> ``(N, h, w)``."""
    return (weights[:, :, None, None] * act).sum(dim=1)


def gradcam(act: Tensor, grad: Tensor) -> Tensor:
    """Grad-CAM (Selvaraju et al. 2017, https://arxiv.org/abs/1610.02391): spatial mean of G."""
    return _weighted(grad.mean(dim=(2, 3)), act)


def gradcampp(act: Tensor, grad: Tensor) -> Tensor:
    """Grad-CAM++ (Chattopadhyay et al. 2018, https://arxiv.org/abs/1710.11063), equation 19."""
    g2 = grad.pow(2)
    g3 = g2 * grad
    sum_act = act.sum(dim=(2, 3), keepdim=True)
    aij = g2 / (2 * g2 + sum_act * g3 + 1e-6)
    aij = torch.where(grad != 0, aij, torch.zeros_like(aij))
    return _weighted((grad.clamp_min(0) * aij).sum(dim=(2, 3)), act)


def xgradcam(act: Tensor, grad: Tensor) -> Tensor:
    """XGrad-CAM (Fu et al. 2020, https://arxiv.org/abs/2008.02312): G weighted by A's share."""
    sum_act = act.sum(dim=(2, 3), keepdim=True)
    return _weighted((grad * act / (sum_act + 1e-7)).sum(dim=(2, 3)), act)


def layercam(act: Tensor, grad: Tensor) -> Tensor:
    """LayerCAM (Jiang et al. 2021, https://ieeexplore.ieee.org/document/9462463): ``ReLU(G) * A``."""
    return (grad.clamp_min(0) * act).sum(dim=1)


def hirescam(act: Tensor, grad: Tensor) -> Tensor:
    """HiResCAM (Draelos & Carin 2020, https://arxiv.org/abs/2011.08891): ``sum_c G * A``."""
    return (grad * act).sum(dim=1)


def gradcam_elementwise(act: Tensor, grad: Tensor) -> Tensor:
    """Element-wise Grad-CAM (pytorch-grad-cam's ``GradCAMElementWise``): ``sum_c ReLU(G * A)``."""
    return (grad * act).clamp_min(0).sum(dim=1)


def first_component(t: Tensor) -> Tensor:
    """Projection of each image's ``(C, h*w)`` map on its first principal component: ``(N, h, w)``.

    Numpy's SVD, as pytorch-grad-cam's ``get_2d_projection``: the sign of a singular vector is
    arbitrary, and the same LAPACK call gives the same sign, hence the same map after the ReLU.
    """
    a = np.nan_to_num(t.detach().float().cpu().numpy())
    out = []
    for img in a:
        flat = img.reshape(img.shape[0], -1).T
        flat = flat - flat.mean(axis=0)
        _, _, vt = np.linalg.svd(flat, full_matrices=False)
        out.append((flat @ vt[0]).reshape(img.shape[1:]))
    return torch.from_numpy(np.float32(out)).to(t.device)


def eigencam(act: Tensor, grad: Tensor) -> Tensor:
    """Eigen-CAM (Muhammad & Yeasin 2020, https://arxiv.org/abs/2008.00299): A's first component."""
    return first_component(act)


def eigengradcam(act: Tensor, grad: Tensor) -> Tensor:
    """EigenGrad-CAM (pytorch-grad-cam): the first principal component of ``G * A``."""
    return first_component(grad * act)


def fem(act: Tensor, grad: Tensor, k: float = 2.0) -> Tensor:
    """FEM, the Feature Explanation Method (Fuad et al. 2020, https://hal.science/hal-02963298):
    each channel weighted by the share of its positions above its ``mean + k std`` (k-sigma rule,
    population std, ``k = 2`` as pytorch-grad-cam's default); no gradient."""
    mean = act.mean(dim=(2, 3), keepdim=True)
    std = act.std(dim=(2, 3), keepdim=True, correction=0)
    return _weighted((act > mean + k * std).float().mean(dim=(2, 3)), act)


def kpca_cam(act: Tensor, grad: Tensor) -> Tensor:
    """KPCA-CAM (Karmani et al. 2024, https://arxiv.org/abs/2410.00267): Eigen-CAM with kernel PCA.

    Each image's ``(h*w, C)`` centred activations projected on the first component of scikit-learn's
    ``KernelPCA`` with a sigmoid kernel, as pytorch-grad-cam's ``KPCA_CAM`` (its defaults); sklearn
    fixes the component's sign (``svd_flip``), so the map does not flip between runs.
    """
    from sklearn.decomposition import KernelPCA

    a = np.nan_to_num(act.detach().float().cpu().numpy())
    out = []
    for img in a:
        flat = img.reshape(img.shape[0], -1).T
        flat = flat - flat.mean(axis=0)
        out.append(KernelPCA(n_components=1, kernel="sigmoid").fit_transform(flat).reshape(img.shape[1:]))
    return torch.from_numpy(np.float32(out)).to(act.device)


GRADIENT_CAMS: dict[str, CamFunction] = {
    "gradcam": gradcam,
    "gradcampp": gradcampp,
    "xgradcam": xgradcam,
    "layercam": layercam,
    "hirescam": hirescam,
    "gradcam_elementwise": gradcam_elementwise,
    "eigencam": eigencam,
    "eigengradcam": eigengradcam,
    "fem": fem,
    "kpca_cam": kpca_cam,
}
NO_GRADIENT = frozenset({"eigencam", "fem", "kpca_cam"})  # need the forward only
