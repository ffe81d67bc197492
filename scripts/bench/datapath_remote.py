"""The datapath section's remote files: Microsoft's Azure Blob emulator (Azurite), started and stopped by the
same scripts/azurite/start.sh and stop.sh the tests' `azurite` fixture uses, a container holding the csv files
(one ~1 MB file per mini-batch), and the workloads mpibatch reads from it: `az://` input with the connection
string in `storage_options`, as a user gives it, straight to the emulator and through the latency proxy."""
from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from datapath_data import NAME, Sizes, Workload, dataset, read_time
from datapath_proxy import LatencyProxy
from harness import REPO, log, run_command

AZURITE = REPO / "scripts" / "azurite"
LATENCY_MS = 20.0


@dataclass(frozen=True)
class Emulator:
    port: int
    connection_string: str

    def via(self, port: int) -> str:
        """The connection string with the blob endpoint on another port (the proxy's)."""
        return self.connection_string.replace(f"127.0.0.1:{self.port}/", f"127.0.0.1:{port}/")


@contextmanager
def emulator(state: Path) -> Iterator[Emulator | str]:
    """A running Azurite, or why it could not start; stopped (by the pid start.sh recorded) on the way out."""
    done, _ = run_command([str(AZURITE / "start.sh"), str(state)], 600)
    if done.returncode != 0:
        yield (done.stderr.strip().splitlines() or [f"scripts/azurite/start.sh: exit status {done.returncode}"])[-1]
        return
    found = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    try:
        yield Emulator(int(found["port"]), found["connection_string"])
    finally:
        run_command([str(AZURITE / "stop.sh"), str(state)], 60)


def upload(store: Emulator, files: list[Path]) -> str:
    """The files into a fresh container's files/ folder; its az:// URL."""
    import fsspec

    fs = fsspec.filesystem("az", connection_string=store.connection_string, skip_instance_cache=True)
    container = f"datapath-{uuid.uuid4().hex[:8]}"
    fs.mkdir(container)
    fs.put([str(f) for f in files], [f"{container}/files/{f.name}" for f in files])
    return f"az://{container}/files"


def workload(url: str, files: list[Path], name: str, connection_string: str) -> Workload:
    """Remote files one per mini-batch, Y = a file staged by mpibatch's calls, in a fresh process."""
    found = read_time(url, "--format", "files", "--connection-string", connection_string)
    return Workload(name, "files", url, {"path": url, "storage_options": {"connection_string": connection_string}},
                    "1", 1, len(files), files[0].stat().st_size / 1e6, found["read_s"] * 1e3, found["reader"])


def remote_workloads(stack: ExitStack, cache: Path, state: Path, sizes: Sizes) -> list[Workload] | str:
    """The emulator's two workloads (direct, and with LATENCY_MS added per request), or why there are none;
    the emulator and the proxy live until `stack` closes."""
    store = stack.enter_context(emulator(state))
    if isinstance(store, str):
        return f"the Azure Blob emulator did not start ({store})"
    files = sorted(dataset(cache, "csv", sizes).glob("*.csv"))[:sizes.remote_files]
    url = upload(store, files)
    proxy = stack.enter_context(LatencyProxy(store.port, LATENCY_MS / 1e3))
    log(f"[{NAME}] Azurite on port {store.port}, {len(files)} files in {url}; +{LATENCY_MS:g} ms proxy on {proxy.port}")
    return [workload(url, files, "remote files (Azurite)", store.connection_string),
           workload(url, files, f"remote files (Azurite) +{LATENCY_MS:g} ms", store.via(proxy.port))]
