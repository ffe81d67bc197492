"""A tabular scorer in the style of Azure ML's ParallelRunStep iris sample: a model folder named by a
relative --model argument (Azure resolves it from the code folder), a 2-D prediction array assigned
as a column (`result['variety'] = pred`: pandas 1.5 takes it, pandas 3 refuses it)."""
import argparse
import os
import pickle

import numpy as np
import pandas as pd

model = None


def init():
    global model
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    args, _ = parser.parse_known_args()
    with open(os.path.join(args.model, "model.pkl"), "rb") as fh:  # relative: from the code folder
        model = pickle.load(fh)


def run(input_data):
    if os.environ.get("IRIS_EXPECT_PANDAS"):  # run in an environment of its own: nothing of the runner's
        try:
            import pydantic  # noqa: F401
        except ImportError:
            pass
        else:
            raise RuntimeError("the runner's pydantic leaked into the script's environment")
    wanted = os.environ.get("IRIS_EXPECT_PANDAS")
    if wanted and pd.__version__ != wanted:
        raise RuntimeError(f"pandas {pd.__version__}, not the environment's {wanted}")
    num_rows, _ = input_data.shape
    lengths = input_data["petal_length"].to_numpy()
    pred = np.where(lengths > model["petal_length_above"], "Versicolor", "Setosa").reshape((num_rows, 1))
    result = input_data.drop(input_data.columns[4:], axis=1)
    result["variety"] = pred
    return result
