"""What a job leaves behind, and reading it back: the result file and its journal (`commit`: append the
formatted bytes, then journal the mini-batch with its end offset, so each commits exactly once; `journal`,
`integrity`: the checks that a resume trusts), the log layout and job_result files (`logs`), the copy to a
remote output (`remote`), progress lines and job_progress.json (`progress`), the entry-script processes'
resources (`perf`) and `mpibatch status`, which reads all of it from the folder alone (`status`). These
modules import the standard library, the shared vocabulary (records, text) and config; never inputs,
script, cluster, engine, api or cli. Nothing is imported here.
"""
