"""Test entry script: a per-partition computation that fails for one partition (FAIL_PARTITION=key=value).

Files or table rows alike: returns one line per item naming its partition and the partition's size,
so a half of a partition would show as a wrong size."""
import os


def run(mini_batch, mini_batch_context):
    value = mini_batch_context.partition_key_value
    key, bad = os.environ["FAIL_PARTITION"].split("=")
    if str(value[key]) == bad:
        raise ValueError(f"partition {key}={bad} cannot be computed")
    label = ",".join(f"{k}={v}" for k, v in sorted(value.items()))
    return [f"{label} size={len(mini_batch)}"] * len(mini_batch)
