"""Stand-in for the package Azure ML puts beside ParallelRunStep entry scripts."""
