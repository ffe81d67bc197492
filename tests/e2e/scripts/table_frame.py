"""Test entry script returning a DataFrame (header: true tests): id and twice the id."""
import os
import time


def run(df):
    time.sleep(float(os.environ.get("SLEEP_PER_BATCH", "0")))
    return df.assign(double=df["id"] * 2)[["id", "double"]]
