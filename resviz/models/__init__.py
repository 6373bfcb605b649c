"""The resviz model zoo. Importing this package does not import torch; building a model does."""

from resviz.models.config import ResNetConfig, StageInfo
from resviz.models.registry import (
    ModelSpec,
    cifar_config,
    create_model,
    get_config,
    get_spec,
    list_models,
    make_twin,
    model_names,
    twin_name,
)

__all__ = [
    "ModelSpec",
    "ResNetConfig",
    "StageInfo",
    "cifar_config",
    "create_model",
    "get_config",
    "get_spec",
    "list_models",
    "make_twin",
    "model_names",
    "twin_name",
]
