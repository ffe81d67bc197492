"""Test entry script in the style of azureml-examples' many-models training (1a_oj_sales_prediction
parallel_train.py): one 'model' file per partition, written by the script itself; run() returns []."""
import os

from mpibatch import EntryScript


def run(input_data, mini_batch_context):
    store = mini_batch_context.partition_key_value["Store"]
    assert mini_batch_context.dataset.to_pandas_dataframe() is input_data  # the partition's rows
    folder = os.path.join(EntryScript().output_dir, "models")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"store_{store}.txt"), "w") as fh:
        fh.write(f"{len(input_data)} rows, mean sales {input_data['Sales'].mean():.2f}\n")
    return []
