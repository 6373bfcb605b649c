"""Training under ``torchrun``: DistributedDataParallel with BatchNorm over the global batch.

Each process takes an equal slice of the same global batch, and BatchNorm statistics are reduced
over all processes, so two processes compute what one would (to floating-point tolerance).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class _GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose training statistics cover the whole global batch, on any device.

    ``nn.SyncBatchNorm`` does this on GPUs only; this version reduces the per-channel sums with a
    differentiable all-reduce, which Gloo runs on CPUs. It keeps BatchNorm2d's parameter names.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        c = x.shape[1]
        count = torch.tensor([x.numel() / c], device=x.device, dtype=x.dtype)
        stats = all_reduce(torch.cat([x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)), count]))
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c : 2 * c] / n - mean * mean).clamp_min(0.0)
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            self.running_var.mul_(1 - m).add_(var.detach() * (n / (n - 1)), alpha=m)
        shape = (1, c, 1, 1)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return y * self.weight.view(shape) + self.bias.view(shape)


def _swap_batchnorm(module: nn.Module, cls: type[nn.BatchNorm2d]) -> nn.Module:
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d) and type(child) is not cls:
            new = cls(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
            new.load_state_dict(child.state_dict())
            new.to(child.weight.device)
            setattr(module, name, new)
        else:
            _swap_batchnorm(child, cls)
    return module


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return DistributedDataParallel(model, device_ids=[device.index or 0])
    return DistributedDataParallel(_swap_batchnorm(model, _GlobalBatchNorm2d))


def plain_batchnorm(model: nn.Module) -> nn.Module:
    """Put ordinary BatchNorm2d back after distributed training (same parameters and buffers)."""
    swapped = any(isinstance(m, _GlobalBatchNorm2d | nn.SyncBatchNorm) for m in model.modules())
    if not swapped:
        return model
    for name, child in list(model.named_children()):
        if isinstance(child, _GlobalBatchNorm2d | nn.SyncBatchNorm):
            new = nn.BatchNorm2d(
                child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
            )
            new.load_state_dict(child.state_dict())
            setattr(model, name, new.to(child.weight.device))
        else:
            plain_batchnorm(child)
    return model
