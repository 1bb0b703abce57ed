"""Backbone registry: entries, any-timm-name fallback, the resolution policy, and size counting."""

from __future__ import annotations

import pytest
import timm
import torch

from bench.errors import ConfigError
from bench.models.registry import (
    BackboneEntry,
    create_backbone,
    get_backbone,
    list_backbones,
    model_stats,
    probe_min_input_size,
    resolve_resolution,
)

MISSION = {
    "efficientnet_b0",
    "tf_efficientnetv2_b0",
    "tf_efficientnetv2_s",
    "vgg16",
    "resnet18",
    "resnet50",
    "densenet121",
    "convnext_tiny",
    "convnext_small",
    "inception_resnet_v2",
    "tf_efficientnet_lite0",
}


def test_every_mission_backbone_is_registered():
    assert MISSION <= {e.name for e in list_backbones()}


@pytest.mark.parametrize("entry", list_backbones(), ids=lambda e: e.name)
def test_declared_min_input_size_is_exact(entry):
    """The declared minimum runs, one pixel less does not (so the upsize policy is honest)."""
    model = timm.create_model(entry.arch, num_classes=2).eval()
    with torch.inference_mode():
        model(torch.zeros(1, 3, entry.min_input_size, entry.min_input_size))
        if entry.min_input_size > 8:
            with pytest.raises(RuntimeError):
                model(torch.zeros(1, 3, entry.min_input_size - 1, entry.min_input_size - 1))


def test_unregistered_timm_name_works():
    entry = get_backbone("mobilenetv3_small_050")
    assert not entry.registered and entry.arch == "mobilenetv3_small_050"
    model, provenance = create_backbone("mobilenetv3_small_050", num_classes=4)
    assert model.get_classifier().out_features == 4 and provenance == {"source": "random-init"}


def test_unknown_name_suggests_close_ones():
    with pytest.raises(ConfigError, match=r"unknown backbone 'resnet181'.*did you mean resnet18"):
        get_backbone("resnet181")


@pytest.mark.parametrize(
    "name, requested, policy, expected",
    [
        ("densenet121", 28, "upsize", 29),
        ("densenet121", 64, "upsize", 64),
        ("inception_resnet_v2", 28, "upsize", 75),
        ("resnet18", 28, "refuse", 28),
        ("convnext_tiny", 32, "refuse", 32),
    ],
)
def test_resolution_policy(name, requested, policy, expected):
    assert resolve_resolution(get_backbone(name), requested, policy) == expected


def test_refuse_says_what_to_pass():
    with pytest.raises(ConfigError, match="densenet121.*at least 29x29, got 28: pass --resolution 29"):
        resolve_resolution(get_backbone("densenet121"), 28, "refuse")


def test_probe_finds_the_minimum_of_an_unregistered_model():
    assert probe_min_input_size("densenet121") == 29
    entry = BackboneEntry(name="densenet121", registered=False)
    assert resolve_resolution(entry, 16) == 29


class _RefusesBelow(torch.nn.Module):
    """A stand-in architecture that raises as a too-small input does, and counts the sides it was shown."""

    def __init__(self, minimum: int):
        super().__init__()
        self.minimum, self.sides = minimum, []

    def forward(self, x):
        self.sides.append(x.shape[-1])
        if x.shape[-1] < self.minimum:
            raise RuntimeError("Input size is too small")
        return x.mean()


@pytest.mark.parametrize("minimum", [8, 9, 29, 32, 33, 75, 300, 512])
def test_probe_finds_any_minimum_without_a_pass_above_twice_it(monkeypatch, minimum):
    model = _RefusesBelow(minimum)
    monkeypatch.setattr(timm, "create_model", lambda arch, **kwargs: model)
    assert probe_min_input_size.__wrapped__(f"fake_{minimum}") == minimum
    assert max(model.sides) < 2 * minimum  # no 512 px pass for a 29 px minimum


def test_probe_of_a_model_refusing_every_side_names_it(monkeypatch):
    monkeypatch.setattr(timm, "create_model", lambda arch, **kwargs: _RefusesBelow(10_000))
    with pytest.raises(ConfigError, match="'fake' does not accept a 512x512 input"):
        probe_min_input_size.__wrapped__("fake")


@pytest.mark.parametrize(
    "arch, resolution, params, gmacs",
    # Reference figures: timm's published ImageNet model cards (1000 classes, 224 px).
    [("resnet18", 224, 11.69e6, 1.82), ("resnet50", 224, 25.56e6, 4.11), ("efficientnet_b0", 224, 5.29e6, 0.40)],
)
def test_model_stats_match_published_figures(arch, resolution, params, gmacs):
    stats = model_stats(timm.create_model(arch), resolution)
    assert stats["params"] == pytest.approx(params, rel=0.01)
    assert stats["gmacs"] == pytest.approx(gmacs, rel=0.05)


def test_model_stats_scale_with_resolution():
    model = timm.create_model("resnet18", num_classes=2)
    assert model_stats(model, 448)["gmacs"] == pytest.approx(model_stats(model, 224)["gmacs"] * 4, rel=0.02)


def test_malformed_entry_names_file_and_field(tmp_path, monkeypatch):
    (tmp_path / "backbones").mkdir()
    (tmp_path / "backbones" / "bad.toml").write_text('name = "x"\nmin_input_size = "big"\n')
    monkeypatch.setenv("BENCH_HOME", str(tmp_path))
    with pytest.raises(ConfigError, match=r"bad.toml: field 'min_input_size' must be int"):
        list_backbones()


def test_entry_with_unknown_timm_name(tmp_path, monkeypatch):
    (tmp_path / "backbones").mkdir()
    (tmp_path / "backbones" / "typo.toml").write_text('name = "x"\ntimm_name = "resnet_18"\n')
    monkeypatch.setenv("BENCH_HOME", str(tmp_path))
    with pytest.raises(ConfigError, match=r"typo.toml: field 'timm_name' 'resnet_18' is not a timm model"):
        list_backbones()


def test_small_input_stem_keeps_a_28px_image_whole():
    """MedMNIST's ResNet-18 (28): 3x3/1 stem, no max-pool, so layer1 sees 28x28 (timm's resnet18: 7x7)."""
    seen = {}
    for name in ("resnet18_cifar_stem", "resnet18"):
        model, _ = create_backbone(name, num_classes=2)
        model.layer1.register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, o.shape[-1]))
        with torch.inference_mode():
            model.eval()(torch.zeros(1, 3, 28, 28))
    assert seen == {"resnet18_cifar_stem": 28, "resnet18": 7}
    assert model_stats(create_backbone("resnet18_cifar_stem", 2)[0], 28)["gmacs"] == pytest.approx(0.457, rel=0.01)


@pytest.mark.parametrize(
    "toml, pretrained, message",
    [
        ('timm_name = "resnet18"', True, r"replaces the ImageNet stem .* use a protocol that trains from scratch"),
        ('timm_name = "vgg16"', False, r"'x': small_input_stem needs a ResNet-style model .*VGG"),
    ],
)
def test_small_input_stem_errors(tmp_path, monkeypatch, toml, pretrained, message):
    (tmp_path / "backbones").mkdir()
    (tmp_path / "backbones" / "x.toml").write_text(f'name = "x"\n{toml}\nsmall_input_stem = true\n')
    monkeypatch.setenv("BENCH_HOME", str(tmp_path))
    with pytest.raises(ConfigError, match=message):
        create_backbone("x", num_classes=2, pretrained=pretrained)


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0", "tf_efficientnetv2_s", "convnext_tiny"])
def test_drop_rate_puts_dropout_before_the_classifier(name):
    plain, _ = create_backbone(name, num_classes=2)
    model, _ = create_backbone(name, num_classes=2, drop_rate=0.3)
    assert (plain.drop_rate, model.drop_rate) == (0.0, 0.3)
    model.train()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = model.forward_features(x)
        assert not torch.equal(model.forward_head(features), model.forward_head(features))  # dropout draws
        model.eval()
        assert torch.equal(model.forward_head(features), model.forward_head(features))
