"""Test entry script for tables: one line per row, `<mini-batch id> <rows> <csv bytes> <partition> <row id>`.

The csv bytes are the batch re-serialized as the test data was written, so a test can check the size
of a byte-range mini-batch. SLEEP_PER_BATCH slows each call down (for stop/resume tests).
"""
import os
import time


def run(df, ctx):
    time.sleep(float(os.environ.get("SLEEP_PER_BATCH", "0")))
    data = df[[c for c in df.columns if c in ("id", "name", "x")]]
    size = len(data.to_csv(header=False, index=False).encode())
    part = ",".join(f"{k}={v}" for k, v in sorted(ctx.partition_key_value.items())) or "-"
    return [f"{ctx.mini_batch_id} {len(df)} {size} {part} {i}" for i in df["id"]]
