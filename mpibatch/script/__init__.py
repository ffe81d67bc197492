"""Where the entry script lives: everything between a worker and the user's init()/run()/shutdown(). Read in
order: executor.py (the Executor interface a worker drives, and its events), process.py (the default: a
fresh child process, killable at its deadline, restarted after a crash) with outbox.py (the pipe to it,
never blocking) and script_env.py (the child's command line and environment: the script's own interpreter,
command_prefix), child.py (`python -m mpibatch.script.child`: the child's main), entry.py (the runtime
around the script and the public EntryScript), heap.py, proctree.py (killing all the script started),
inline.py (the script in a thread of the rank), compat/ (the azureml shims) and checks.py (the checks of the
script before any work). These modules import the standard library, the shared vocabulary (records, text),
config, inputs.files (checks.py) and, lazily inside the child, inputs.read; never engine, output, cluster,
api or cli. The child's side (child, entry, heap, proctree, outbox, compat and what they import) stays
standard-library-only and Python-3.8-clean: it runs in the script's own interpreter. Nothing is imported
here, so `import mpibatch` stays cheap.
"""
