"""A partitioned file job written as the Azure ML partition_keys sample is (compat fixture)."""
import os

from azureml_user.parallel_run import EntryScript


def init():
    EntryScript().logger.info("init")


def run(mini_batch, mini_batch_context):
    print(f"partition_key_value = {mini_batch_context.partition_key_value}")
    value = mini_batch_context.partition_key_value
    return [f"{value['user']},{value['genres']},{len(mini_batch)},{os.path.basename(path)}" for path in mini_batch]
