"""What the entry-script process sees of its own environment, one line per input file: its
niceness, a variable a prefix set, its cwd, its interpreter's folder, and whether it is in a
pid namespace of its own (bwrap --unshare-pid). A file named 'hang' sleeps (a timeout), with a
grandchild that writes its pid to the file the variable PROBE_PIDS names."""
import os
import subprocess
import sys
import time


def run(mini_batch):
    out = []
    for path in mini_batch:
        name = os.path.basename(path)
        if name == "hang":
            child = subprocess.Popen(["sleep", "300"])
            with open(os.environ["PROBE_PIDS"], "a") as fh:
                fh.write(f"{os.getpid()} {child.pid}\n")
            time.sleep(300)
        own_namespace = os.getpid() < 10
        out.append(f"{name} nice={os.nice(0)} var={os.environ.get('PREFIX_VAR')} cwd={os.path.basename(os.getcwd())} "
                   f"python={os.path.basename(os.path.dirname(os.path.dirname(sys.executable)))} "
                   f"own_pid_namespace={own_namespace}")
    return out
