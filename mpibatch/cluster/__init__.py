"""The machine and the batch system around the ranks: what a site gives a job and how to ask for it.
`launch` (what the launcher says about the world, the check that the ranks joined one, which MPI is
installed), `cpus` (the cores a node lets the job use), `placement` (each worker's GPU, cores and thread
caps), `walltime` (the job's end time and whether one more mini-batch fits), `slurm` with `templates/`
(`mpibatch submit`: sbatch scripts rendered from package data) and `doctor` (`mpibatch doctor`: every
rank's view of the site, checked). These modules import the standard library, the shared vocabulary
(records, text), config and output (submit writes the run's first state); a submit checks the entry
script through script.checks, lazily. Nothing is imported here: each command loads what it uses.
"""
