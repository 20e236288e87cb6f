"""Models: both architectures expose forward/embed, build from scratch and warm-start from a local state dict."""

from __future__ import annotations

import pickle

import pytest
import torch

from rayml_assets.lib.training.models import MODEL_NAMES, SmallCNN, build_model, load_pretrained


@pytest.mark.parametrize("name", MODEL_NAMES)
@pytest.mark.parametrize("channels,size", [(1, 16), (3, 32)])
def test_forward_and_embed_shapes(name, channels, size):
    model = build_model(name, num_classes=7, in_channels=channels).eval()
    x = torch.rand(4, channels, size, size)
    with torch.no_grad():
        logits, features = model(x), model.embed(x)
    assert logits.shape == (4, 7)
    assert features.shape == (4, model.embedding_dim)
    assert torch.isfinite(features).all()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_embed_is_the_penultimate_layer(name):
    """forward = final linear layer applied to embed: monitoring relies on that."""
    model = build_model(name, num_classes=3, in_channels=1).eval()
    head = model.head[-1] if isinstance(model, SmallCNN) else model.fc
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), head(model.embed(x)), atol=1e-5)


def test_resnet_keeps_resolution_in_its_stem():
    model = build_model("resnet18", num_classes=10, in_channels=1)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1) and model.conv1.in_channels == 1
    assert isinstance(model.maxpool, torch.nn.Identity)
    # pickles by reference although torchvision is imported lazily
    assert type(pickle.loads(pickle.dumps(model))) is type(model)


def test_unknown_model_and_too_few_classes_are_refused():
    with pytest.raises(ValueError, match="unknown model"):
        build_model("vgg", 10)
    with pytest.raises(ValueError, match="at least 2"):
        build_model("small_cnn", 1)


def test_pretrained_weights_skip_mismatched_keys(tmp_path):
    donor = build_model("small_cnn", num_classes=10, in_channels=1)
    path = tmp_path / "donor.pt"
    # a DDP-style checkpoint: keys prefixed with "module." inside a {"model": ...} wrapper
    torch.save({"model": {f"module.{k}": v for k, v in donor.state_dict().items()}}, path)
    model = build_model("small_cnn", num_classes=4, in_channels=1, pretrained_weights_path=path)
    own = model.state_dict()
    assert torch.equal(own["features.0.weight"], donor.state_dict()["features.0.weight"])
    assert own["head.1.weight"].shape == (4, 128)  # the 10-class head was skipped
    assert sorted(load_pretrained(model, path)) == ["head.1.bias", "head.1.weight"]


def test_torchvision_resnet_checkpoint_loads_except_stem_and_head(tmp_path):
    from torchvision.models import resnet18

    donor = resnet18(num_classes=1000)
    path = tmp_path / "resnet18.pth"
    torch.save(donor.state_dict(), path)
    model = build_model("resnet18", num_classes=10, in_channels=1)
    skipped = load_pretrained(model, path)
    assert set(skipped) == {"conv1.weight", "fc.weight", "fc.bias"}
    assert torch.equal(model.layer4[1].conv2.weight, donor.layer4[1].conv2.weight)


def test_weights_that_match_nothing_are_an_error(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"something.else": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="no tensor"):
        build_model("small_cnn", 10, pretrained_weights_path=path)
