"""Test-only stand-in for ``lib/training/train_task.py``: the same contract, no Ray.

It opens Pipes with the real runtime, validates ``pipes.extras`` exactly as the
real task script does (``TrainTaskParams.from_extras``), and reports the params
it read back plus trial counts shaped like the real metadata. The Tune experiment
name ``with-a-failed-trial`` makes one of its pretend trials fail.
"""

from rayml_assets.lib.common.pipes_runtime import task_runtime
from rayml_assets.lib.training.contract import TrainTaskParams

FAILING_EXPERIMENT = "with-a-failed-trial"


def main() -> None:
    with task_runtime() as (pipes, _ray_address):
        params = TrainTaskParams.from_extras(pipes.extras)
        trials = params.tuning.num_trials()
        pipes.report_asset_materialization(
            metadata={
                "params": {"raw_value": params.to_extras(), "type": "json"},
                "trials_run": {"raw_value": trials, "type": "int"},
                "trials_errored": {"raw_value": int(params.experiment_name == FAILING_EXPERIMENT), "type": "int"},
            },
            asset_key=params.asset_key,
        )


if __name__ == "__main__":
    main()
