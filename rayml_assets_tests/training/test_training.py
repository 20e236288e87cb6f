"""Training core without Ray: Delta streaming, sharding, augmentation, evaluation, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from deltalake import write_deltalake

from rayml_assets.lib.common import lake
from rayml_assets.lib.training.augment import random_affine
from rayml_assets.lib.training.checkpoints import load_checkpoint_model, save_checkpoint
from rayml_assets.lib.training.delta_stream import DataSpec, DeltaImageStream, discover_labels, shard_sizes
from rayml_assets.lib.training.evaluation import confusion_metrics, evaluate
from rayml_assets.lib.training.models import build_model
from rayml_assets_tests.support.training_fixtures import EXCLUDED_ONLY_LABEL, digits_table, write_digits_table


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    uri, version = write_digits_table(str(tmp_path_factory.mktemp("lake")), n=200, image_size=16)
    return uri, version, discover_labels(uri, version)


def _spec(table) -> DataSpec:
    uri, version, labels = table
    return DataSpec(uri, version, labels, image_size=16, channels=1)


def _ids(stream) -> list[int]:
    # a sample's identity: its pixels (hash of the tensor bytes)
    return [hash(x.numpy().tobytes()) for x, _ in stream]


def test_labels_come_from_non_excluded_rows_only(table):
    _, _, labels = table
    assert labels == tuple(str(d) for d in range(10))
    assert EXCLUDED_ONLY_LABEL not in labels


def test_ranks_partition_the_split_and_skip_excluded_rows(table):
    spec = _spec(table)
    rows = digits_table(200, 16)
    expected = sum(1 for r in rows.to_pylist() if r["split"] == "train" and not r["excluded"])
    shards = [_ids(DeltaImageStream(spec, "train", rank=r, world_size=3)) for r in range(3)]
    assert sum(map(len, shards)) == expected == sum(shard_sizes(spec, "train", 3))
    assert [len(s) for s in shards] == shard_sizes(spec, "train", 3)
    everything = [i for s in shards for i in s]
    assert len(set(everything)) == len(set(_ids(DeltaImageStream(spec, "train"))))


def test_shuffle_is_seeded_per_epoch_and_limit_caps_each_rank(table):
    spec = _spec(table)

    def order(epoch: int) -> list[int]:
        return _ids(DeltaImageStream(spec, "train", shuffle=True, seed=1, epoch=epoch, shuffle_buffer=16))

    assert order(0) == order(0)
    assert order(0) != order(1)
    assert sorted(order(0)) == sorted(order(1))
    limited = list(DeltaImageStream(spec, "train", rank=1, world_size=2, limit=5, shuffle=True))
    assert len(limited) == 5
    x, y = limited[0]
    assert x.shape == (1, 16, 16) and x.dtype == torch.float32 and 0 <= y < 10


def test_pinned_version_ignores_later_writes(table):
    uri, version, _ = table
    spec = _spec(table)
    before = len(list(DeltaImageStream(spec, "val")))
    write_deltalake(uri, digits_table(40, 16, offset=1000), mode="append")
    assert lake.current_version(uri) > version
    assert len(list(DeltaImageStream(spec, "val"))) == before


def test_unknown_labels_raise_unless_kept(table):
    uri, version, _ = table
    spec = DataSpec(uri, version, ("0", "1"), 16, 1)
    with pytest.raises(ValueError, match="not one of the model's classes"):
        list(DeltaImageStream(spec, "val"))
    labels = {y for _, y in DeltaImageStream(spec, "val", unknown_labels="keep")}
    assert -1 in labels and labels <= {-1, 0, 1}


def test_random_affine_moves_pixels_but_keeps_shape():
    x = torch.zeros(8, 1, 16, 16)
    x[:, :, 4:12, 6:10] = 1.0
    out = random_affine(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert not torch.allclose(out, x)
    still = random_affine(x, torch.Generator().manual_seed(0), max_degrees=0, max_translate=0, scale=(1.0, 1.0))
    assert torch.allclose(still, x, atol=1e-5)


def test_confusion_metrics_by_hand():
    confusion = np.array([[3, 1, 0], [0, 2, 0], [1, 0, 0]])
    precision, recall = confusion_metrics(confusion, ["a", "b", "c"])
    assert precision == pytest.approx({"a": 0.75, "b": 2 / 3, "c": 0.0})
    assert recall == pytest.approx({"a": 0.75, "b": 1.0, "c": 0.0})


def test_evaluate_counts_every_row_and_agrees_with_its_confusion_matrix(table):
    spec = _spec(table)
    torch.manual_seed(0)
    model = build_model("small_cnn", 10, 1)
    result = evaluate(model, spec, "val", batch_size=7)
    confusion = np.array(result.confusion)
    assert result.n == confusion.sum() == len(list(DeltaImageStream(spec, "val")))
    assert result.accuracy == pytest.approx(np.trace(confusion) / confusion.sum())
    assert set(result.per_class_recall) == set(spec.class_labels)
    assert model.training  # evaluate restores the mode it found


def test_checkpoint_roundtrip_rebuilds_the_same_model(tmp_path, table):
    spec = _spec(table)
    model = build_model("small_cnn", 10, 1).eval()
    meta = {"model": "small_cnn", "class_labels": list(spec.class_labels), "channels": 1, "image_size": 16}
    save_checkpoint(tmp_path / "ckpt", model, meta, torch.optim.SGD(model.parameters(), lr=0.1), epoch=3)
    loaded, loaded_meta = load_checkpoint_model(tmp_path / "ckpt")
    x = torch.rand(2, 1, 16, 16)
    assert torch.allclose(loaded(x), model(x))
    assert loaded_meta["epoch"] == 3 and loaded_meta["class_labels"] == list(spec.class_labels)
