"""Write a simulated production stream: one folder of images per day, plus label feedback.

    python -m rayml_assets.sample_stream --days 20 --start 2026-01-01 [--per-day 200]
        [--production DIR] [--feedback DIR] [--seed 0] [--feedback-fraction 0.5]

Images are drawn from ``held_back_digits()`` (never trained
on) with a tiny pixel jitter (each value moves by at most ±1 of 255), so every
image has its own bytes and a day can hold thousands of them. Each image gets
a class first (uniform on clean days), then a digit of that class, without
replacement while the class's ~36 held-back digits last (see ``pick_digits``).

The schedule is deterministic and repeats every 10 days (``drift_kind``):

====  ==========  ==========================================================
day   kind        what changes
====  ==========  ==========================================================
0, 1  clean
2     rotation    every digit rotated by 25–40 degrees, either direction
3     clean
4     noise       Gaussian pixel noise, sigma = 0.25 of full scale
5     clean
6     brightness  contrast squeezed to 65 % and the background lifted by 90/255
7     clean
8     class_mix   digits 0 and 1 are five times as likely as any other digit
9     clean
====  ==========  ==========================================================

Feedback (``{feedback}/{date}.csv``) labels a seeded ``feedback_fraction`` of
the day's images: alternate rows name the image by ``image_id`` and by ``uri``
(relative to the production root). Days in ``DUPLICATE_FEEDBACK_DAYS`` also
hold two stale, wrong duplicates (older ``observed_at``) that must lose to the
latest row; days in ``UNKNOWN_FEEDBACK_DAYS`` hold one row for an image that was
never landed.
"""

from __future__ import annotations

import argparse
import csv
import io
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

import fsspec
import numpy as np
from PIL import Image

from rayml_assets.lib.common.images import encode_png, sha256_hex
from rayml_assets.lib.monitoring.production import feedback_uri, partition_key, production_day_uri
from rayml_assets.sample import Digit, held_back_digits
from rayml_assets.settings import load_profile

DRIFT_KINDS = ("rotation", "noise", "brightness", "class_mix")
_CYCLE: tuple[str | None, ...] = (None, None, "rotation", None, "noise", None, "brightness", None, "class_mix", None)
DEFAULT_DAYS = 20
DRIFT_SCHEDULE: dict[int, str | None] = {i: _CYCLE[i % len(_CYCLE)] for i in range(DEFAULT_DAYS)}
DUPLICATE_FEEDBACK_DAYS = frozenset({1})
UNKNOWN_FEEDBACK_DAYS = frozenset({3})
JITTER = 1  # max change of a pixel value (of 255): new bytes, same digit (±3 was itself detectable)
CLASS_MIX_BOOST = {"0": 5.0, "1": 5.0}


def drift_kind(day_index: int) -> str | None:
    """The drift of day ``day_index`` (0-based from the stream's start); ``None`` is a clean day."""
    return _CYCLE[day_index % len(_CYCLE)]


def _rotate(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    angle = rng.uniform(25.0, 40.0) * rng.choice([-1.0, 1.0])
    return np.asarray(Image.fromarray(pixels).rotate(angle, resample=Image.BILINEAR, fillcolor=0))


def _noise(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.clip(pixels + rng.normal(0.0, 0.25 * 255.0, pixels.shape), 0, 255).astype(np.uint8)


def _brightness(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.clip(pixels * 0.65 + 90.0, 0, 255).astype(np.uint8)


PIXEL_DRIFTS = {"rotation": _rotate, "noise": _noise, "brightness": _brightness}


def apply_drift(pixels: np.ndarray, kind: str | None, rng: np.random.Generator) -> np.ndarray:
    """Apply one kind of pixel drift to a uint8 image (``class_mix`` and clean days leave pixels alone)."""
    transform = PIXEL_DRIFTS.get(kind or "")
    return transform(pixels, rng) if transform else pixels


def jitter(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noise = rng.integers(-JITTER, JITTER + 1, size=pixels.shape)
    return np.clip(pixels.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def class_probabilities(classes: list[str], kind: str | None) -> np.ndarray:
    """Clean days draw classes uniformly, as balanced as the training data (174-183 digits per class)."""
    weights = np.array([CLASS_MIX_BOOST.get(c, 1.0) if kind == "class_mix" else 1.0 for c in classes])
    return weights / weights.sum()


def pick_digits(digits: list[Digit], per_day: int, kind: str | None, rng: np.random.Generator) -> np.ndarray:
    """Indices into ``digits``: a class per image first, then a digit of that class.

    Classes are drawn fresh every day, so a clean day's class mix is an honest
    sample of the training distribution, not a copy of the 360-digit pool's own
    mix (which, shared by every day, made the chi-squared test flag clean days).
    Within a class, digits are drawn without replacement while they last:
    repeated digits are near-duplicates no real stream has, and they alone made
    clean days look drifted (MMD p = 0 with 200 drawn with replacement).
    """
    by_class: dict[str, list[int]] = {}
    for i, digit in enumerate(digits):
        by_class.setdefault(digit.label, []).append(i)
    classes = sorted(by_class)
    counts = rng.multinomial(per_day, class_probabilities(classes, kind))
    picks = np.concatenate(
        [rng.choice(by_class[c], size=n, replace=n > len(by_class[c])) for c, n in zip(classes, counts)]
    ).astype(int)
    rng.shuffle(picks)
    return picks


@dataclass(frozen=True)
class StreamImage:
    name: str  # file name inside the day folder
    label: str
    data: bytes

    @property
    def image_id(self) -> str:
        return sha256_hex(self.data)


def generate_day(day_index: int, per_day: int, seed: int = 0, digits: list[Digit] | None = None) -> list[StreamImage]:
    """The images of one day, in memory: the same arguments always give the same bytes."""
    digits = digits if digits is not None else held_back_digits()
    kind = drift_kind(day_index)
    rng = np.random.default_rng([seed, day_index])
    picks = pick_digits(digits, per_day, kind, rng)
    out = []
    for position, pick in enumerate(picks):
        digit = digits[pick]
        pixels = jitter(apply_drift(digit.pixels, kind, rng), rng)
        out.append(StreamImage(f"img_{position:05d}.png", digit.label, encode_png(pixels)))
    return out


def feedback_rows(key: str, day_index: int, images: list[StreamImage], fraction: float, seed: int = 0) -> list[dict]:
    """The feedback CSV rows of one day (see the module docstring for the bad-input rows)."""
    rng = np.random.default_rng([seed, day_index, 1])
    n = int(round(fraction * len(images)))
    chosen = np.sort(rng.choice(len(images), size=n, replace=False)) if n else np.array([], int)
    start = datetime.combine(date.fromisoformat(key), time(12), tzinfo=timezone.utc)
    rows = []
    for position, i in enumerate(chosen):
        image = images[i]
        by_id = position % 2 == 0
        rows.append(
            {
                "image_id": image.image_id if by_id else "",
                "uri": "" if by_id else f"{key}/{image.name}",
                "true_label": image.label,
                "observed_at": (start + timedelta(seconds=position)).isoformat(),
            }
        )
    if day_index in DUPLICATE_FEEDBACK_DAYS:
        # Older, wrong observations of two labelled images: keep-the-latest must discard them.
        for row in rows[:2]:
            stale = dict(
                row, true_label="stale-" + row["true_label"], observed_at=(start - timedelta(hours=6)).isoformat()
            )
            rows.append(stale)
    if day_index in UNKNOWN_FEEDBACK_DAYS:
        rows.append(
            {
                "image_id": sha256_hex(f"never landed {key}".encode()),
                "uri": "",
                "true_label": "7",
                "observed_at": start.isoformat(),
            }
        )
    return rows


def feedback_csv(rows: list[dict]) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["image_id", "uri", "true_label", "observed_at"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode()


@dataclass(frozen=True)
class StreamDay:
    date: str
    day_index: int
    kind: str | None
    n_images: int
    n_feedback_rows: int


def write_stream(
    production_root: str,
    feedback_root: str,
    days: int = DEFAULT_DAYS,
    start: str = "2026-01-01",
    per_day: int = 200,
    seed: int = 0,
    feedback_fraction: float = 0.5,
) -> list[StreamDay]:
    """Write ``days`` daily batches and their feedback; returns what each day holds."""
    digits = held_back_digits()
    first = date.fromisoformat(partition_key(start))
    written = []
    for day_index in range(days):
        key = (first + timedelta(days=day_index)).isoformat()
        images = generate_day(day_index, per_day, seed, digits)
        fs, folder = fsspec.core.url_to_fs(production_day_uri(production_root, key))
        fs.makedirs(folder, exist_ok=True)
        for image in images:
            fs.pipe_file(f"{folder}/{image.name}", image.data)
        rows = feedback_rows(key, day_index, images, feedback_fraction, seed)
        ffs, fpath = fsspec.core.url_to_fs(feedback_uri(feedback_root, key))
        ffs.makedirs(fpath.rsplit("/", 1)[0], exist_ok=True)
        ffs.pipe_file(fpath, feedback_csv(rows))
        written.append(StreamDay(key, day_index, drift_kind(day_index), len(images), len(rows)))
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=DEFAULT_DAYS)
    parser.add_argument("--start", default="2026-01-01", help="first day, YYYY-MM-DD")
    parser.add_argument("--per-day", type=int, default=200, help="images per day (up to thousands)")
    parser.add_argument("--production", help="production landing root (default: the profile's production_landing_uri)")
    parser.add_argument("--feedback", help="feedback landing root (default: the profile's feedback_landing_uri)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--feedback-fraction", type=float, default=0.5, help="share of images that get a true label")
    args = parser.parse_args(argv)
    profile = None if args.production and args.feedback else load_profile()
    production = args.production or profile.production_landing_uri
    feedback = args.feedback or profile.feedback_landing_uri
    for day in write_stream(
        production, feedback, args.days, args.start, args.per_day, args.seed, args.feedback_fraction
    ):
        print(f"{day.date}  {day.kind or 'clean':<10}  {day.n_images} images  {day.n_feedback_rows} feedback rows")
    print(f"production: {production}\nfeedback:   {feedback}")


if __name__ == "__main__":
    main()
