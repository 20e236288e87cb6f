"""Test-only task: one metadata value bigger than the 1 MB a single DBFS read returns."""

import hashlib
import random
import string

from rayml_assets.lib.common.pipes_runtime import task_runtime

BIG_BYTES = 1_600_000  # over DBFS's 1 MB read limit, so no single read can carry the chunk


def big_value(seed: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choices(string.ascii_letters, k=BIG_BYTES))


def main() -> None:
    with task_runtime() as (pipes, _):
        value = big_value(pipes.get_extra("seed"))
        pipes.report_asset_materialization(
            metadata={"big": value, "big_sha256": hashlib.sha256(value.encode()).hexdigest()}
        )


if __name__ == "__main__":
    main()
