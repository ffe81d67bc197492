"""Entry script of the MLTable e2e tests: one line per partition (its rows, Quantity total and columns),
per row (mini-batch id and values) or per file."""
import os


def run(mini_batch, mini_batch_context):
    if isinstance(mini_batch, list):
        return [f"file {os.path.relpath(path, os.environ['MLTABLE_ROOT'])}" for path in mini_batch]
    key = mini_batch_context.partition_key_value
    if key:
        return [f"part {'/'.join(str(v) for v in key.values())} rows={len(mini_batch)} "
                f"total={int(mini_batch['Quantity'].sum())} columns={','.join(mini_batch.columns)}"]
    return [f"row {mini_batch_context.mini_batch_id} " + " ".join(str(v) for v in row)
            for row in mini_batch.itertuples(index=False)]
