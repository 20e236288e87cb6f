"""Models: every architecture exposes forward/embed, pickles by reference, builds from scratch and fine-tunes
from a local state dict (an RGB stem summed into a grey one, another head skipped)."""

from __future__ import annotations

import io
import pickle
import subprocess
import sys

import cloudpickle
import pytest
import torch
from torch import nn

from rayml_assets.lib.training.models import MODEL_NAMES, SmallCNN, build_model, load_pretrained

# the ImageNet stem divides by 32, so those models get larger inputs than the small-image ones
SIZES = {"small_cnn": (16, 32), "resnet18": (16, 32)}
# one name per class: the other names share these classes
ONE_PER_CLASS = (
    "small_cnn",
    "resnet18",
    "torchvision_resnet18",
    "torchvision_mobilenet_v3_small",
    "torchvision_efficientnet_b0",
)


def final_linear(model: nn.Module) -> nn.Linear:
    if isinstance(model, SmallCNN):
        return model.head[-1]
    return model.fc if hasattr(model, "fc") else model.classifier[-1]


def module_name(model: nn.Module, module: nn.Module) -> str:
    return next(name for name, m in model.named_modules() if m is module)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward_and_embed_shapes(name, channels):
    """forward = the final linear layer applied to embed, at two input sizes: monitoring relies on that."""
    model = build_model(name, num_classes=7, in_channels=channels).eval()
    assert model.embedding_dim == final_linear(model).in_features
    for size in SIZES.get(name, (32, 64)):
        x = torch.rand(2, channels, size, size)
        with torch.no_grad():
            logits, features = model(x), model.embed(x)
            assert torch.allclose(logits, final_linear(model)(features), atol=1e-5)
            if name.startswith("torchvision_"):  # torchvision's own forward, unchanged
                assert torch.allclose(logits, type(model).__bases__[-1].forward(model, x), atol=1e-5)
        assert logits.shape == (2, 7)
        assert features.shape == (2, model.embedding_dim)
        assert torch.isfinite(features).all()


def test_model_names_are_the_architectures():
    from rayml_assets.lib.training.architectures import TORCHVISION_ARCHS

    assert MODEL_NAMES == ("small_cnn", "resnet18", *(f"torchvision_{arch}" for arch in TORCHVISION_ARCHS))


def test_importing_models_stays_cheap():
    """Every Ray worker imports models.py: no torchvision (torch._dynamo) until a model needs it."""
    code = (
        "import sys; import rayml_assets.lib.training.model_names; assert 'torch' not in sys.modules; "
        "import rayml_assets.lib.training.models; assert 'torchvision' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_resnet_keeps_resolution_in_its_stem():
    model = build_model("resnet18", num_classes=10, in_channels=1)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1) and model.conv1.in_channels == 1
    assert isinstance(model.maxpool, torch.nn.Identity)
    from rayml_assets.lib.training import architectures, models

    # pickles made when the class lived in models.py still resolve
    assert models.SmallImageResNet18 is architectures.SmallImageResNet18


@pytest.mark.parametrize("name", ONE_PER_CLASS)
def test_models_pickle_by_reference(name):
    """Ray pickles models, mlflow.pytorch saves them with cloudpickle: the class must be named, not shipped."""
    import mlflow.pytorch

    model = build_model(name, num_classes=3, in_channels=1).eval()
    data = cloudpickle.dumps(model)
    assert b"_make_skeleton_class" not in data and type(model).__module__.encode() in data
    buffer = io.BytesIO()
    torch.save(model, buffer, pickle_module=mlflow.pytorch.pickle_module)
    buffer.seek(0)
    x = torch.rand(2, 1, 32, 32)
    for clone in (torch.load(buffer, weights_only=False), pickle.loads(pickle.dumps(model))):
        assert type(clone) is type(model) and clone.embedding_dim == model.embedding_dim
        with torch.no_grad():
            assert torch.equal(clone(x), model(x)) and torch.equal(clone.embed(x), model.embed(x))


def test_unknown_model_and_too_few_classes_are_refused():
    with pytest.raises(ValueError, match="unknown model 'vgg'") as refused:
        build_model("vgg", 10)
    assert all(name in str(refused.value) for name in MODEL_NAMES)
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


def test_torchvision_resnet_checkpoint_loads_into_the_small_image_resnet_except_stem_and_head(tmp_path):
    from torchvision.models import resnet18

    donor = resnet18(num_classes=1000)
    path = tmp_path / "resnet18.pth"
    torch.save(donor.state_dict(), path)
    model = build_model("resnet18", num_classes=10, in_channels=1)
    skipped = load_pretrained(model, path)
    assert set(skipped) == {"conv1.weight", "fc.weight", "fc.bias"}  # a 7x7 stem does not fit a 3x3 one
    assert torch.equal(model.layer4[1].conv2.weight, donor.layer4[1].conv2.weight)


@pytest.mark.parametrize(
    "arch,channels", [("resnet18", 1), ("mobilenet_v3_small", 1), ("efficientnet_b0", 1), ("mobilenet_v3_large", 3)]
)
def test_fine_tunes_from_a_torchvision_checkpoint(tmp_path, arch, channels):
    import torchvision

    donor = torchvision.models.get_model(arch, weights=None)  # the 1000-class ImageNet head
    path = tmp_path / f"{arch}.pth"
    torch.save(donor.state_dict(), path)
    model = build_model(f"torchvision_{arch}", num_classes=10, in_channels=channels, pretrained_weights_path=path)

    head = module_name(model, final_linear(model))
    stem = module_name(model, next(m for m in model.modules() if isinstance(m, nn.Conv2d))) + ".weight"
    theirs, own = donor.state_dict(), model.state_dict()
    assert set(theirs) == set(own)  # torchvision's keys
    for key, tensor in theirs.items():
        if key.startswith(f"{head}."):
            assert own[key].shape[0] == 10
        elif key == stem and channels == 1:
            assert own[key].shape[1] == 1 and torch.equal(own[key], tensor.sum(dim=1, keepdim=True))
        else:
            assert torch.equal(own[key], tensor), key
    assert load_pretrained(model, path) == [f"{head}.bias", f"{head}.weight"]

    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    before = own[stem].clone()
    loss = nn.functional.cross_entropy(model(torch.rand(2, channels, 32, 32)), torch.tensor([0, 1]))
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and not torch.equal(model.state_dict()[stem], before)


def test_missing_or_unusable_weights_are_errors_naming_the_path(tmp_path):
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        build_model("small_cnn", 10, pretrained_weights_path=missing)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=str(garbage)):
        build_model("small_cnn", 10, pretrained_weights_path=garbage)
    other = tmp_path / "other.pt"
    torch.save({"something.else": torch.zeros(3)}, other)
    with pytest.raises(ValueError, match=f"no tensor in {other}"):
        build_model("small_cnn", 10, pretrained_weights_path=other)
