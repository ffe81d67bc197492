"""The engine: what makes a planned job run. `coordinator` holds rank 0's loop (run_job's dispatch with
credits, the messages from workers, the commit hand-off); the loop's policies sit beside it, each an
object with a narrow interface that can be read and changed on its own: `retry` (when a failed attempt
runs again, and where), `speculation` (when a straggler gets a copy, which copy wins), `thresholds`
(when failures fail the job, and what a Completed job must still say), `stops` (signals, the time limit,
the drain), `bisection` (splitting a finally failed mini-batch to isolate its failing items), `tally`
(the counts of job_result) and `pending` (the work not yet handed out); later the worker, polling and
signals. Modules here may import the lower layers (config, inputs, plan, records, the executors and the
output side: commit, journal, logs, progress, remote), never cli.
"""
