"""Tabular iris-style scoring written as the Azure ML samples are (compat fixture).

The model is a pickled dict of class centroids registered under the name given by --model_name.
"""
import argparse
import pickle

import numpy as np
from azureml.core.model import Model
from azureml_user.parallel_run import EntryScript


def init():
    global iris_model
    logger = EntryScript().logger
    logger.info("init() called")
    parser = argparse.ArgumentParser(description="Iris classifier")
    parser.add_argument("--model_name", dest="model_name", required=True)
    args, unknown_args = parser.parse_known_args()
    model_path = Model.get_model_path(args.model_name)
    with open(model_path, "rb") as fh:
        iris_model = pickle.load(fh)
    logger.info(f"loaded {args.model_name}, unknown args {unknown_args}")


def run(input_data):
    logger = EntryScript().logger
    logger.info(f"run({input_data.shape}) called")
    features = input_data[["sepal_length", "sepal_width", "petal_length", "petal_width"]].to_numpy()
    names = list(iris_model)
    centroids = np.stack([iris_model[n] for n in names])
    pred = [names[i] for i in ((features[:, None, :] - centroids[None]) ** 2).sum(axis=2).argmin(axis=1)]
    result = input_data.drop(input_data.columns[4:], axis=1)
    result["variety"] = pred
    return result
