"""The Python API: driving jobs from Python or a notebook instead of the command line. `job` (Job: a job
built from keys or a job file, run here under mpiexec or submitted to Slurm), `run` (Run: the handle of
one run, its status, waiting, stopping, and JobFailed), `results` (reading a finished run's results,
errors and logs back) and `notebook_view` (a run's live view in Jupyter). mpibatch.Job, Run, JobFailed
load lazily from here; mpibatch.azureml (ParallelRunConfig, ParallelRunStep) is Azure ML v1's face over
Job. These modules import the layers below them (config, output; cluster and script.checks lazily, to
check and launch a job) and the report lazily for Run.report(); never engine (a job runs in its own
processes) and never cli. Nothing is imported here, so
`import mpibatch` stays cheap.
"""
