"""Example entry script: count lines and words of each text file, and name its most common word."""
import collections
import os

from mpibatch import EntryScript

logger = None


def init():
    global logger
    logger = EntryScript().logger
    logger.info("worker %s ready", EntryScript().agent_name)


def run(mini_batch):
    results = []
    for path in mini_batch:
        words = open(path).read().split()
        top, count = collections.Counter(words).most_common(1)[0]
        results.append(f"{os.path.relpath(path, os.path.dirname(os.path.dirname(path)))} "
                       f"words={len(words)} top={top}:{count}")
    logger.info("scored %d files", len(mini_batch))
    return results
