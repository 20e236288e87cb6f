"""Test-only task: fails the way a broken task script does, with its own message."""

from rayml_assets.lib.common.pipes_runtime import task_runtime


def main() -> None:
    with task_runtime() as (pipes, _):
        pipes.log.info("fail.py is about to fail")
        raise ValueError("fail.py: the training data is empty (test failure)")


if __name__ == "__main__":
    main()
