"""Local stand-ins for what the public samples download or build in an earlier pipeline step: MNIST-style
PNGs, a TensorFlow 1 checkpoint with the tensor names the samples' scripts look up, and small tables.

Run as a program where a process of its own is needed: `mnist-checkpoint FOLDER` (TensorFlow) and `iris ...`
(under the samples' own environment, with scikit-learn and MLflow); the rest is imported by the tests."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

TEMPLATE_SEED = 6


def digit_weights() -> np.ndarray:
    """784x10 weights: each digit's mean rendered image, scaled to unit length (a linear 'network')."""
    from mpibatch.demo.digits import make_arrays

    images, labels = make_arrays(2000, seed=TEMPLATE_SEED)
    flat = images.reshape(len(images), 784).astype(np.float32)
    means = np.stack([flat[labels == d].mean(axis=0) for d in range(10)])
    return (means / np.linalg.norm(means, axis=1, keepdims=True)).T.astype(np.float32)


def predict_digit(weights: np.ndarray, png: Path) -> int:
    """What the checkpoint answers for one image: argmax of X @ W (the samples' np.argmax)."""
    from PIL import Image

    pixels = np.array(Image.open(png)).reshape((1, 784)).astype(np.float32)
    return int(np.argmax(pixels @ weights))


def write_mnist_checkpoint(folder: Path) -> None:
    """mnist-tf.model.{meta,index,data-*} as tf.compat.v1.train.Saver writes them: the graph has
    network/X (the input placeholder) and network/output/MatMul (the scores), as the real model has."""
    import tensorflow as tf

    v1 = tf.compat.v1
    v1.disable_eager_execution()
    folder.mkdir(parents=True, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default():
        with v1.variable_scope("network"):
            x = v1.placeholder(tf.float32, shape=(None, 784), name="X")
            with v1.variable_scope("output"):
                w = v1.get_variable("W", initializer=digit_weights())
                tf.matmul(x, w)  # network/output/MatMul
        saver = v1.train.Saver()
        with v1.Session(graph=graph) as session:
            session.run(v1.global_variables_initializer())
            saver.save(session, str(folder / "mnist-tf.model"))


OJ_COLUMNS = ["WeekStarting", "Quantity", "logQuantity", "Advert", "Price", "Age60", "COLLEGE", "INCOME", "Hincome150",
              "Large HH", "Minorities", "WorkingWoman", "SSTRDIST", "SSTRVOL", "CPDIST5", "CPWVOL5", "Store", "Brand"]


def oj_sales_rows(stores: int = 3, weeks: int = 4) -> list[list]:
    """dominicks_OJ.csv's columns as partition_by(['Store', 'Brand']) leaves them (the keys last), with a few
    made-up weeks: INCOME is store * 100 + week, so each partition's total is known."""
    rows = []
    for store in range(1, stores + 1):
        for brand in ("dominicks", "minute.maid", "tropicana"):
            for week in range(weeks):
                income = store * 100 + week
                rows.append([f"1990-06-{14 + 7 * (week % 2):02d}", 1000 + week, 9.1, 1, 2.59, 0.23, 0.25, income,
                             0.46, 0.1, 0.11, 0.3, 2.1, 1.14, 1.92, 0.37, store, brand])
    return rows


IRIS_CLASSES = {"setosa": (5.0, 3.4, 1.5, 0.2), "versicolor": (5.9, 2.8, 4.3, 1.3), "virginica": (6.6, 3.0, 5.6, 2.0)}
IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def iris_frame(rows: int, extra_columns: int, seed: int):
    """Iris-like measurements (one decimal) and, like the samples' 'neural-iris' data, extra noise columns."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    names = list(IRIS_CLASSES)
    labels = [names[i % 3] for i in range(rows)]
    values = np.array([IRIS_CLASSES[label] for label in labels]) + rng.normal(0, 0.25, (rows, 4))
    frame = pd.DataFrame(np.round(np.abs(values), 1), columns=IRIS_FEATURES)
    for i in range(extra_columns):
        frame[f"n{i}"] = np.round(rng.normal(0, 1, rows), 2)
    return frame, labels


def write_iris(kind: str, data_file: Path, model_path: Path, expected_file: Path, rows: int, extra_columns: int) -> None:
    """Under the samples' own environment (scikit-learn, MLflow, pandas < 3): the data, a model trained on it
    in the format the script loads (`pickle`: a pickled estimator; `mlflow`: an MLflow sklearn model folder),
    and the exact lines the script's run() must produce for it, as append_row writes them."""
    from sklearn.tree import DecisionTreeClassifier

    frame, labels = iris_frame(rows, extra_columns, seed=7)
    data_file.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(data_file, index=False)
    model = DecisionTreeClassifier(random_state=0).fit(frame, labels)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "pickle":
        import pickle

        with open(model_path, "wb") as fh:
            pickle.dump(model, fh)
    else:
        import mlflow.sklearn

        mlflow.sklearn.save_model(model, str(model_path), serialization_format="cloudpickle")  # as the samples' MLmodel
    result = frame.drop(frame.columns[4:], axis=1)
    result["variety"] = model.predict(frame)
    expected_file.write_text(result.to_csv(sep=" ", header=False, index=False))


if __name__ == "__main__":
    if sys.argv[1:2] == ["mnist-checkpoint"]:
        write_mnist_checkpoint(Path(sys.argv[2]))
    elif sys.argv[1:2] == ["iris"]:
        kind, data, model, expected, rows, extra = sys.argv[2:]
        write_iris(kind, Path(data), Path(model), Path(expected), int(rows), int(extra))
    else:
        raise SystemExit("usage: standins.py mnist-checkpoint FOLDER | iris pickle|mlflow DATA MODEL EXPECTED ROWS EXTRA")
