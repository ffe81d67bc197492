"""Test entry script: init() prints what this worker was given (GPU, thread caps, CPU affinity)."""
import json
import os

from mpibatch import EntryScript

VARIABLES = ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
             "NUMEXPR_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


def init():
    me = EntryScript()
    print("PROBE " + json.dumps({"rank": me.rank, "node_rank": me.node_rank, "local": me.local_worker_index,
                                 "gpu": me.gpu, "env": {k: os.environ.get(k) for k in VARIABLES},
                                 "affinity": sorted(os.sched_getaffinity(0))}), flush=True)


def run(mini_batch):
    return [f"{os.path.basename(path)} gpu={os.environ.get('CUDA_VISIBLE_DEVICES')}" for path in mini_batch]
