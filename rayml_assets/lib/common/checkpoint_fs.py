"""The pyarrow filesystem Ray checkpoints use on Azure: adlfs behind ``FSSpecHandler``, pickled without credentials.

Ray pickles ``RunConfig.storage_filesystem`` to every trial worker, and Tune writes it into the
experiment (``tuner.pkl``, beside the checkpoints). An fsspec filesystem pickles its constructor
arguments, a client secret or an account key among them, so this handler pickles as
``(uri, settings)`` instead (variable names only) and each process that unpickles it reads the
credentials from its own environment: on Databricks every node has them from the cluster's
``spark_env_vars``, locally the Ray workers inherit the driver's.
"""

from __future__ import annotations

from pyarrow.fs import FSSpecHandler, PyFileSystem

from rayml_assets.lib.common.storage_options import StorageSettings, filesystem


class AzureCheckpointHandler(FSSpecHandler):
    def __init__(self, uri: str, settings: StorageSettings | None):
        self._args = (uri, settings)
        super().__init__(filesystem(uri, settings)[0])

    def __reduce__(self):
        return type(self), self._args


def azure_checkpoint_filesystem(uri: str, settings: StorageSettings | None) -> tuple[str, PyFileSystem]:
    """``(path in the filesystem, filesystem)`` of an Azure URI."""
    return filesystem(uri, settings)[1], PyFileSystem(AzureCheckpointHandler(uri, settings))
