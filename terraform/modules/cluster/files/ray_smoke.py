"""Start Ray on this Spark cluster and fail unless Ray sees the workers' GPUs."""

import ray
from ray.util.spark import MAX_NUM_WORKER_NODES, setup_ray_cluster, shutdown_ray_cluster

setup_ray_cluster(max_worker_nodes=MAX_NUM_WORKER_NODES)
try:
    ray.init()
    resources = ray.cluster_resources()
    if resources.get("GPU", 0) < 1:
        raise SystemExit(f"Ray on Spark started without GPUs: {resources}")
    print(f"Ray on Spark is up: {resources}")
finally:
    shutdown_ray_cluster()
