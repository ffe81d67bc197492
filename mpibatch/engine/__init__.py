"""The engine: what makes a planned job run. `coordinator` holds rank 0's loop: dispatch with credits
and what each worker message changes. What it asks and hands off sits beside it, each an object with a
narrow interface that can be read and changed on its own: the policies `retry` (when a failed attempt
runs again, and where), `speculation` (when a straggler gets a copy, which copy wins), `thresholds`
(when failures fail the job, and what a Completed job must still say), `stops` (signals, the time limit,
the drain), `bisection` (splitting a finally failed mini-batch to isolate its failing items) and
`workers` (which workers can take work, when the job gives up for want of one); the bookkeeping
`settle` (the commit hand-off; failed, split and isolated mini-batches; error lines), `tally` (the
counts), `pending` (the work not yet handed out), `mail` (messages to and from the workers), `report`
(job_result, the progress snapshot, timing) and `files` (what rank 0 writes besides commits, and what a
failed write means); later the worker, polling and signals. Modules here may import the lower layers
(config, inputs, plan, records, the executors and the output side: commit, journal, logs, progress,
remote), never cli.
"""
