# Copied verbatim from github.com/Azure/MachineLearningNotebooks at commit f1aff553c475be391acb2e5d4e4094867b5963c0,
# path how-to-use-azureml/machine-learning-pipelines/parallel-run/Code/total_income.py (MIT License, Copyright (c) Microsoft Corporation). Only this header was added.
# Copyright (c) Microsoft. All rights reserved.
# Licensed under the MIT license.

import os


def init():
    print("Init")


def run(mini_batch):
    print(f'run method start: {__file__}, run({mini_batch})')
    total_income = mini_batch["INCOME"].sum()
    print(f'total_income = {total_income}')
    mini_batch["total_income"] = total_income

    return mini_batch
