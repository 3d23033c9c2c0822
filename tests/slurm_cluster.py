"""A throw-away single-node Slurm cluster for tests (munged + slurmctld + slurmd on 127.0.0.1).

All state lives in one temp dir: munge key, socket, seed and log; slurm.conf; the controller's
state and the node's spool; logs; pid files. Commands see the cluster through SLURM_CONF only, so
several clusters (other test sessions on this machine) can run side by side on their own ports.
Needs the Debian packages slurm-wlm slurmctld slurmd slurm-client munge (utils/setup.sh).

If the cluster cannot start, the fixture FAILS with the daemons' logs: a skipped Slurm test would
hide a broken backend.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from conftest import REPO_ROOT, recipe_env

DEBIAN_PACKAGES = "slurm-wlm slurmctld slurmd slurm-client munge"
PARTITION = "debug"
# Partition limit in minutes: low enough that a job asking for more never starts (PartitionTimeLimit),
# which is how the tests make a job that stays pending.
PARTITION_MAX_TIME = 30


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _is_gone(pid: int) -> bool:
    """True once pid has exited. A daemon reparented to a PID 1 that does not reap stays a
    zombie, for which kill -0 still succeeds: read its state from /proc instead."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # The state follows the command name in parentheses, which may itself hold spaces.
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True
    return state in ("Z", "X")


def _stop_pid(pid: int, timeout: float = 10.0) -> None:
    if _is_gone(pid):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _is_gone(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _read_pid(path: Path) -> Optional[int]:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class SlurmCluster:
    root: Path
    slurm_conf: Path
    env: Dict[str, str]
    partition: str = PARTITION
    max_time_minutes: int = PARTITION_MAX_TIME
    pid_files: List[Path] = field(default_factory=list)

    def logs(self) -> str:
        """The daemons' logs, for failure messages."""
        parts = []
        for name in ("munged.log", "slurmctld.log", "slurmd.log"):
            path = self.root / "log" / name
            text = path.read_text(errors="replace") if path.exists() else "(missing)"
            parts.append(f"----- {path} -----\n{text[-4000:]}")
        return "\n".join(parts)

    def job_config(self, path: Path, extra: str = "") -> Path:
        """A slurm.pl config for this cluster, in the format of conf/slurm.conf."""
        path.write_text(
            "# slurm.pl config of the test cluster (no GPU partition here)\n"
            "command sbatch --export=PATH\n"
            "option time=* --time $0\n"
            "option mem=* --mem-per-cpu $0\n"
            "option mem=0\n"
            "default num_threads=1\n"
            "option num_threads=* --cpus-per-task $0\n"
            "default gpu=0\n"
            "option gpu=0\n"
            f"{extra}"
        )
        return path

    def _squeue_ids(self) -> List[str]:
        try:
            return subprocess.run(["squeue", "-h", "-o", "%A"], env=self.env, capture_output=True,
                                  text=True, timeout=30).stdout.split()
        except (OSError, subprocess.TimeoutExpired):
            return []

    def stop(self, cancel_jobs: bool = True) -> None:
        # Jobs still running would leave their slurmstepd behind once slurmd is gone.
        jobs = self._squeue_ids() if cancel_jobs else []
        if jobs:
            subprocess.run(["scancel", *jobs], env=self.env, capture_output=True, timeout=30)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self._squeue_ids():
                time.sleep(0.2)
        # slurmd first: the controller would otherwise mark the node down and log noise.
        for pid_file in reversed(self.pid_files):
            pid = _read_pid(pid_file)
            if pid is not None:
                _stop_pid(pid)
        munge_dir = self.pid_files[0].parent
        if self.root not in munge_dir.parents:
            shutil.rmtree(munge_dir, ignore_errors=True)


def start_cluster(root: Path) -> SlurmCluster:
    missing = [b for b in ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo")
               if shutil.which(b, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None]
    if missing:
        pytest.fail(f"Slurm test cluster: {', '.join(missing)} not installed; install the Debian "
                    f"packages: apt-get install --no-install-recommends {DEBIAN_PACKAGES}",
                    pytrace=False)
    sbin = "/usr/sbin"
    for d in ("munge", "log", "run", "ctld", "spool"):
        (root / d).mkdir(parents=True, exist_ok=True)
    munge_dir = root / "munge"
    if len(str(munge_dir)) > 80:
        # A socket path must fit in sockaddr_un (108 bytes): a long --basetemp would not.
        munge_dir = Path(tempfile.mkdtemp(prefix="vs-munge-"))
    os.chmod(munge_dir, 0o755)  # munged refuses a socket dir others may write to
    key = munge_dir / "munge.key"
    key.write_bytes(os.urandom(1024))
    os.chmod(key, 0o400)  # ... and a key others may read
    sock = munge_dir / "munge.socket"

    host = socket.gethostname().split(".")[0]
    node_info = subprocess.run([f"{sbin}/slurmd", "-C"], capture_output=True, text=True).stdout
    mem = re.search(r"RealMemory=(\d+)", node_info)
    cpus = re.search(r"CPUs=(\d+)", node_info)
    node_cpus = cpus.group(1) if cpus else 2
    node_mem = mem.group(1) if mem else 1000
    ctld_port, slurmd_port = _free_port(), _free_port()
    conf = root / "slurm.conf"
    conf.write_text(f"""\
ClusterName=vstest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={sock}
StateSaveLocation={root}/ctld
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=batch_sched_delay=0
MinJobAge=5
NodeName={host} NodeAddr=127.0.0.1 CPUs={node_cpus} RealMemory={node_mem} State=UNKNOWN
PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime={PARTITION_MAX_TIME} State=UP
""")
    env = recipe_env()
    env["SLURM_CONF"] = str(conf)
    # Settings of an enclosing allocation would leak into our sbatch calls.
    for k in [k for k in env if k.startswith(("SLURM_", "SBATCH_", "SQUEUE_")) and k != "SLURM_CONF"]:
        del env[k]
    cluster = SlurmCluster(root=root, slurm_conf=conf, env=env,
                           pid_files=[munge_dir / "munged.pid", root / "run" / "slurmctld.pid",
                                      root / "run" / "slurmd.pid"])

    def start(cmd: List[str]) -> None:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            cluster.stop(cancel_jobs=False)
            pytest.fail(f"Slurm test cluster: {' '.join(cmd)} failed ({proc.returncode}): "
                        f"{proc.stdout}{proc.stderr}\n{cluster.logs()}", pytrace=False)

    # Without -D/-F the daemons fork into the background and write their pid files.
    start([f"{sbin}/munged", f"--socket={sock}", f"--key-file={key}",
           f"--pid-file={munge_dir}/munged.pid", f"--log-file={root}/log/munged.log",
           f"--seed-file={munge_dir}/munged.seed", "--force"])
    start([f"{sbin}/slurmctld", "-i"])
    start([f"{sbin}/slurmd"])

    deadline = time.monotonic() + 30
    state = ""
    while time.monotonic() < deadline:
        proc = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], env=env, capture_output=True,
                              text=True)
        state = (proc.stdout + proc.stderr).strip()
        if proc.returncode == 0 and state.startswith("idle"):
            return cluster
        time.sleep(0.2)
    cluster.stop(cancel_jobs=False)
    pytest.fail(f"Slurm test cluster: node not idle after 30 s (sinfo: {state!r})\n{cluster.logs()}",
                pytrace=False)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    root = Path(tmp_path_factory.mktemp("slurm"))
    cluster = start_cluster(root)
    try:
        yield cluster
    finally:
        cluster.stop()


__all__ = ["SlurmCluster", "start_cluster", "slurm_cluster", "REPO_ROOT", "DEBIAN_PACKAGES"]
