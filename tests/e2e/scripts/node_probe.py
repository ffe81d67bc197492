"""Test entry script for simulated nodes (tests/e2e/nodes.py): init() prints where this worker runs
and what it was given; each result line says which host ran the item, whether the item was read
from this node's scratch ($TMPDIR), that file system's device, and which ranks' working folders
this node's scratch holds (on a node-local scratch: this node's ranks only)."""
import json
import os
import socket

from mpibatch import EntryScript


def init():
    me = EntryScript()
    print("PROBE " + json.dumps({"rank": me.rank, "node_rank": me.node_rank, "local": me.local_worker_index,
                                 "gpu": me.gpu, "cuda": os.environ.get("CUDA_VISIBLE_DEVICES"),
                                 "host": socket.gethostname(), "working_dir": me.working_dir}), flush=True)


def _ranks_with_scratch(scratch):
    return ",".join(sorted(str(int(n[len("mpibatch-rank"):][:4])) for n in os.listdir(scratch)
                           if n.startswith("mpibatch-rank")))


def run(mini_batch):
    scratch = os.environ["TMPDIR"]
    return [f"{os.path.basename(path)} {open(path).read().strip()} host={socket.gethostname()} "
            f"staged={path.startswith(scratch + os.sep)} dev={os.stat(path).st_dev} "
            f"scratch_ranks={_ranks_with_scratch(scratch)}" for path in mini_batch]
