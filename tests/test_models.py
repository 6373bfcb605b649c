"""The model zoo: every variant builds and runs, counts match the papers, knobs do what they say."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from resviz.analysis.layout import block_layout
from resviz.errors import ConfigError, UnknownModelError
from resviz.models import (
    ResNetConfig,
    cifar_config,
    create_model,
    get_config,
    get_spec,
    list_models,
    make_twin,
    model_names,
    twin_name,
)
from resviz.models.resnet import PadShortcut, ResidualBlock, ResNet, StageInfo

# Variants too big to run a forward pass in the default suite; built on "meta" there, run under `slow`.
GIANT = {
    s.name
    for s in list_models()
    if sum(s.config.layers) > 60
    or s.name.startswith(
        (
            "wide_resnet101",
            "plain_wide_resnet101",
            "preact_wide_resnet101",
            "plain_preact_wide_resnet101",
            "resnext101",
            "plain_resnext101",
            "preact_resnext101",
            "plain_preact_resnext101",
        )
    )
}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def input_for(config: ResNetConfig, batch: int = 2) -> torch.Tensor:
    size = 32 if config.stem == "imagenet" else 16
    return torch.randn(batch, config.in_channels, size, size)


@pytest.mark.parametrize("name", [n for n in model_names() if n not in GIANT])
def test_every_variant_runs_forward(name):
    model = create_model(name, seed=0).eval()
    with torch.no_grad():
        out = model(input_for(model.config))
    assert out.shape == (2, model.config.num_classes)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(GIANT))
def test_giant_variants_build_on_meta(name):
    with torch.device("meta"):
        model = ResNet(get_spec(name).config)
    assert n_params(model) > 0
    assert len(model.named_blocks()) == sum(model.config.layers)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(GIANT))
def test_giant_variants_run_forward(name):
    model = create_model(name).eval()
    with torch.no_grad():
        assert model(input_for(model.config, 1)).shape == (1, model.config.num_classes)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("resnet18", 11_689_512),
        ("resnet34", 21_797_672),
        ("resnet50", 25_557_032),
        ("resnet101", 44_549_160),
        ("resnet152", 60_192_808),
    ],
)
def test_imagenet_parameter_counts_equal_torchvision(name, expected):
    with torch.device("meta"):
        model = ResNet(get_spec(name).config)
    assert n_params(model) == expected


@pytest.mark.parametrize(
    ("depth", "millions"), [(20, 0.27), (32, 0.46), (44, 0.66), (56, 0.85), (110, 1.7), (1202, 19.4)]
)
def test_cifar_parameter_counts_match_the_paper(depth, millions):
    with torch.device("meta"):
        model = ResNet(get_spec(f"resnet{depth}").config)
    assert round(n_params(model) / 1e6, 2 if millions < 1 else 1) == millions


TORCHVISION_FAMILY = [s.name for s in list_models(plain=False) if s.torchvision]


@pytest.mark.parametrize("name", TORCHVISION_FAMILY)
def test_torchvision_state_dicts_load_strictly_with_identical_outputs(name):
    import torchvision

    torch.manual_seed(0)
    reference = torchvision.models.get_model(name, weights=None).eval()
    with torch.device("meta"):  # no random init of ours: every tensor comes from the reference
        ours = create_model(name).eval()
    ours.load_state_dict(reference.state_dict(), strict=True, assign=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert (ours(x) - reference(x)).abs().max().item() < 1e-5


def test_registry_has_every_family_and_a_twin_for_each():
    names = set(model_names())
    for required in (
        "resnet18",
        "resnet152",
        "wide_resnet50_2",
        "resnext50_32x4d",
        "resnet20",
        "resnet1202",
        "preact_resnet56",
        "preact_resnet18",
        "resnet8",
        "resnet_tiny",
    ):
        assert required in names
        assert get_spec(required).twin in names
        assert get_spec(get_spec(required).twin).twin == required
    assert twin_name("resnet56") == "plain56"
    assert twin_name("wide_resnet50_2") == "plain_wide_resnet50_2"


def test_custom_cifar_depths_resolve_on_the_fly():
    spec = get_spec("plain38")
    assert spec.config.layers == (6, 6, 6) and not spec.config.skip
    with pytest.raises(ConfigError, match="6n\\+2"):
        cifar_config(21)


def test_unknown_name_lists_choices_and_close_matches():
    with pytest.raises(UnknownModelError) as err:
        get_spec("resnet5O")
    message = str(err.value)
    assert "resnet50" in message and "resnet18" in message and "plain" in message


@pytest.mark.parametrize(
    "knobs",
    [
        {"groups": 32},  # grouped convs need bottleneck blocks
        {"layers": (2, 0, 2, 2)},
        {"widths": (64, 128)},
        {"shortcut": "D"},
        {"no_skip_blocks": {"layer9.0"}},
        {"init": "orthogonal"},
    ],
)
def test_impossible_combinations_raise_config_errors(knobs):
    with pytest.raises(ConfigError):
        get_config("resnet18", **knobs)


def test_unknown_knob_lists_valid_ones():
    with pytest.raises(ConfigError, match="batchnorm"):
        get_config("resnet18", batch_norm=False)


def test_option_a_refuses_to_drop_channels():
    cfg = get_config("resnet8", widths=(32, 16, 64))
    with pytest.raises(ConfigError, match="option B"):
        ResNet(cfg)


def test_plain_twin_has_no_shortcut_at_all():
    plain = create_model("plain50")
    assert not any(b.skip or b.downsample is not None for _, b in plain.named_blocks())
    residual = create_model("resnet50")
    # Exactly the projection shortcuts' parameters are gone.
    projections = sum(n_params(b.downsample) for _, b in residual.named_blocks() if b.downsample is not None)
    assert n_params(residual) - n_params(plain) == projections > 0


def test_make_twin_shares_every_common_parameter():
    residual = create_model("resnet_tiny", seed=3)
    plain = make_twin(residual)
    assert not plain.config.skip
    ours, theirs = residual.state_dict(), plain.state_dict()
    assert set(theirs) < set(ours)
    for key, value in theirs.items():
        assert torch.equal(value, ours[key]), key


def test_residual_and_plain_differ_only_by_the_addition():
    residual = create_model("resnet8", seed=0).eval()
    plain = make_twin(residual).eval()  # option A: identical parameter sets
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(residual(x), plain(x))
        for _, block in residual.named_blocks():
            block.skip = False
        assert torch.allclose(residual(x), plain(x))


def test_single_block_shortcuts_can_be_cut():
    model = create_model("resnet20", no_skip_blocks={"layer2.0", "layer3.2"})
    skips = {name: b.skip for name, b in model.named_blocks()}
    assert not skips["layer2.0"] and not skips["layer3.2"] and skips["layer1.0"]
    assert model.get_submodule("layer2.0").downsample is None


def test_batchnorm_off_removes_every_batchnorm():
    model = create_model("resnet18", batchnorm=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert "layer1.0.conv1.weight" in model.state_dict()


def test_zero_init_makes_each_branch_start_at_zero():
    for name in ("resnet18", "resnet50", "preact_resnet18", "resnet20"):
        model = create_model(name, zero_init_residual=True).eval()
        outputs = {}
        hooks = [
            b.branch_out.register_forward_hook(lambda m, i, o, b=b, out=outputs: out.__setitem__(b, o))
            for _, b in model.named_blocks()
        ]
        with torch.no_grad():
            model(input_for(model.config, 1))
        for h in hooks:
            h.remove()
        assert all(float(o.abs().max()) == 0.0 for o in outputs.values()), name


def test_shortcut_options():
    a = create_model("resnet20")
    assert any(isinstance(b.downsample, PadShortcut) for _, b in a.named_blocks())
    assert n_params(a) == n_params(create_model("plain20"))  # option A has no parameters
    c = create_model("resnet20", shortcut="C")
    assert all(isinstance(b.downsample, nn.Sequential) for _, b in c.named_blocks())


def test_branch_scale_multiplies_the_branch():
    base = create_model("resnet8", seed=1).eval()
    scaled = create_model("resnet8", seed=1, branch_scale=0.0).eval()
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        out = scaled.relu(scaled.bn1(scaled.conv1(x)))
        # With F(x) scaled to zero, an identity block passes relu(x) = x through unchanged.
        assert torch.allclose(scaled.layer1(out), out)
        assert not torch.allclose(base.layer1(out), out)


@pytest.mark.parametrize("init", ["kaiming", "xavier", "default"])
def test_initializations_differ_and_are_seeded(init):
    a = create_model("resnet8", seed=5, init=init)
    b = create_model("resnet8", seed=5, init=init)
    assert torch.equal(a.conv1.weight, b.conv1.weight)
    other = "xavier" if init != "xavier" else "kaiming"
    assert not torch.allclose(a.conv1.weight, create_model("resnet8", seed=5, init=other).conv1.weight)


def test_config_round_trips_through_a_dict():
    cfg = get_config("resnet56", no_skip_blocks={"layer1.1"}, batchnorm=False)
    assert ResNetConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="Unknown config"):
        ResNetConfig.from_dict({"blocks": 3})


def test_in_channels_and_classes():
    model = create_model("resnet_tiny", in_channels=1, num_classes=7)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 7)


@pytest.mark.parametrize("name", model_names())
def test_layout_agrees_with_the_built_model(name):
    with torch.device("meta"):
        model = ResNet(get_spec(name).config)
    built = []
    for _, block in model.named_blocks():
        if not block.skip:
            built.append("none")
        elif block.downsample is None:
            built.append("identity")
        elif isinstance(block.downsample, PadShortcut):
            built.append("padding")
        else:
            built.append("projection")
    assert [b.shortcut for b in block_layout(model.config)] == built
    assert [b.name for b in block_layout(model.config)] == [n for n, _ in model.named_blocks()]


# --------------------------------------------------------------------------- feature_info


@pytest.mark.parametrize(
    ("name", "stages"),
    [
        ("resnet18", [("layer1", 64, 4), ("layer2", 128, 8), ("layer3", 256, 16), ("layer4", 512, 32)]),
        ("resnet50", [("layer1", 256, 4), ("layer2", 512, 8), ("layer3", 1024, 16), ("layer4", 2048, 32)]),
        ("resnet20", [("layer1", 16, 1), ("layer2", 32, 2), ("layer3", 64, 4)]),
    ],
)
def test_feature_info_names_channels_and_reduction(name, stages):
    with torch.device("meta"):
        model = ResNet(get_spec(name).config)
    info = model.feature_info
    assert [(s.name, s.channels, s.reduction) for s in info] == stages
    assert info == model.config.feature_info and isinstance(info[0], StageInfo)
    assert info[0].blocks == tuple(f"layer1.{i}" for i in range(model.config.layers[0]))


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnet20", "preact_resnet20", "resnet_tiny"])
def test_feature_info_matches_the_stage_outputs(name):
    with torch.device("meta"):
        model = ResNet(get_spec(name).config).eval()
    size = 64
    shapes = {}
    hooks = [
        model.get_submodule(s.name).register_forward_hook(
            lambda m, i, o, n=s.name: shapes.__setitem__(n, tuple(o.shape[1:]))
        )
        for s in model.feature_info
    ]
    model(torch.empty(1, model.config.in_channels, size, size, device="meta"))
    for h in hooks:
        h.remove()
    for s in model.feature_info:
        assert shapes[s.name] == (s.channels, size // s.reduction, size // s.reduction), s.name
    assert model.feature_info[-1].channels == model.num_features


def test_named_blocks_follow_feature_info():
    model = create_model("resnet_tiny")
    named = model.named_blocks()
    assert [n for n, _ in named] == [b for s in model.feature_info for b in s.blocks]
    assert all(isinstance(b, ResidualBlock) and model.get_submodule(n) is b for n, b in named)
    assert [n for n, _ in named] == list(model.config.block_names)
