"""What the drift tests compare: the champion's outputs on images, and the pinned references.

Both references come from the exact ``cleaned_images`` version the champion was
trained on (``Champion.delta_version``): a seeded sample of
``DriftConfig.reference_splits`` for data drift, the test split's correctness
for model drift. Build each once and reuse it for every day of a backfill.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rayml_assets.lib.monitoring.contract import DriftConfig
from rayml_assets.lib.monitoring.inference import Champion, EmptyPartitionError, load_split, predict_images


@dataclass
class DriftInputs:
    embeddings: np.ndarray  # [N, D] penultimate features
    probabilities: np.ndarray  # [N, K] softmax outputs

    def __len__(self) -> int:
        return len(self.embeddings)

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    def subsample(self, limit: int | None, seed: int) -> DriftInputs:
        """A seeded sample of ``limit`` rows in their original order (all of them when there are fewer)."""
        if limit is None or len(self) <= limit:
            return self
        keep = np.sort(np.random.default_rng(seed).choice(len(self), size=limit, replace=False))
        return DriftInputs(self.embeddings[keep], self.probabilities[keep])


@dataclass
class DataReference:
    inputs: DriftInputs
    image_ids: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.inputs)


def data_reference(champion: Champion, config: DriftConfig = DriftConfig()) -> DataReference:
    """Champion embeddings and predictions of a seeded sample of ``config.reference_splits``."""
    data = load_split(champion, config.reference_splits, limit=config.reference_size, seed=config.seed)
    if not len(data):
        raise EmptyPartitionError(
            f"no {'/'.join(config.reference_splits)} images in {champion.cleaned_table_uri}@v{champion.delta_version}"
        )
    probs, embeds = predict_images(champion, data.images, config.batch_size)
    return DataReference(DriftInputs(embeds, probs), data.image_ids)


def reference_correctness(champion: Champion, config: DriftConfig = DriftConfig()) -> np.ndarray:
    """Whether the champion classifies each test-split image correctly: the accuracy the model shipped with."""
    test = load_split(champion, ("test",), limit=config.model_reference_size, seed=config.seed)
    if not len(test):
        raise EmptyPartitionError(f"no test images in {champion.cleaned_table_uri}@v{champion.delta_version}")
    probs, _ = predict_images(champion, test.images, config.batch_size)
    index = champion.label_index
    truth = np.array([index.get(label, -1) for label in test.labels])
    return probs.argmax(axis=1) == truth
