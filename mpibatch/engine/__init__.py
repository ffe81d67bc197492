"""The engine: what makes a planned job run. `job` is the start (run_job: prepare on rank 0 — list, plan, open
the output —, place the workers, start each rank's executor, then coordinate or serve); `worker` is every
rank's side (tasks in, outcomes out, through its executor), `polling` the polite wait (spin, then sleep with
a backoff) and `signals` the one place SIGTERM and SIGINT are noted. `coordinator` holds rank 0's loop:
dispatch with credits and what each worker message changes. What it asks and hands off sits beside it, each
an object with a narrow interface that can be read and changed on its own: the policies `retry` (when a
failed attempt runs again, and where), `speculation` (when a straggler gets a copy, which copy wins),
`thresholds` (when failures fail the job, and what a Completed job must still say), `stops` (signals, the
time limit, the drain), `bisection` (splitting a finally failed mini-batch to isolate its failing items) and
`workers` (which workers can take work, when the job gives up for want of one); the bookkeeping `settle`
(the commit hand-off; failed, split and isolated mini-batches; error lines), `tally` (the counts), `pending`
(the work not yet handed out), `mail` (messages to and from the workers), `report` (job_result, the progress
snapshot, timing) and `files` (what rank 0 writes besides commits, and what a failed write means). Modules
here may import every lower layer (records, text, config, inputs, output, cluster, script); never api,
report or cli.
"""
