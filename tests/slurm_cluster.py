"""A private single-node Slurm cluster on localhost, from Debian's packages, for the tests of ``--launcher slurm``.

Started in a temporary folder and stopped, daemon by daemon and by pid, when the tests end:

- ``munged`` with its own key and socket (Slurm's authentication);
- a MariaDB server and ``slurmdbd``: submitit reads job states with ``sacct``, which needs Slurm's accounting
  database, so a cluster without one would leave a cancelled job waiting forever;
- ``slurmctld`` and ``slurmd``: one node named after this machine, with its cores, ``SlurmUser=root``,
  ``proctrack/linuxproc``, ``task/none``, ``select/cons_tres`` (one job per core), time limits enforced, and
  credentials that expire after 10 s instead of 120 (a requeued job waits that long before it runs again).

Ports are free ones picked at start, so the cluster never meets a real one on the same machine; every
client finds it through ``SLURM_CONF``. Debian 12 ships Slurm 22.05. ``python tests/slurm_cluster.py``
starts one by hand and prints the ``SLURM_CONF`` to export, until Ctrl-C.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PROGRAMS = ("munged", "mariadb-install-db", "mariadbd", "slurmdbd", "slurmctld", "slurmd", "sbatch", "sacct")
PACKAGES = "slurm-wlm slurmdbd munge mariadb-server"
CLUSTER = "mixcollapse"
PARTITION = "debug"


def unavailable() -> str | None:
    """Why a private cluster cannot start here (None when it can)."""
    missing = [p for p in PROGRAMS if shutil.which(p) is None and not Path("/usr/sbin", p).exists()]
    if missing:
        return f"no {', '.join(missing)}: apt-get install {PACKAGES} (as root)"
    if os.geteuid() != 0:
        return "the private Slurm cluster runs its daemons as root (SlurmUser=root); run the tests as root"
    return None


@dataclass
class Cluster:
    folder: Path
    env: dict[str, str]  # SLURM_CONF for every client: sbatch, squeue, sacct, scontrol, scancel
    partition: str = PARTITION
    daemons: list[tuple[str, subprocess.Popen]] = field(default_factory=list)

    def run(self, *cmd: str) -> str:
        """A Slurm client command against this cluster; its output."""
        return subprocess.run(cmd, env=self.env, check=True, capture_output=True, text=True, timeout=60).stdout

    def log(self, name: str) -> str:
        path = self.folder / "log" / f"{name}.log"
        return path.read_text(errors="replace") if path.is_file() else ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, ready, cluster: Cluster, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        for name, proc in cluster.daemons:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with code {proc.returncode}: {cluster.log(name)[-2000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the private Slurm cluster: {what} not ready after {timeout_s:.0f} s")
        time.sleep(0.2)


def _listening(port: int):
    def ready() -> bool:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    return ready


def _daemon(cluster: Cluster, name: str, cmd: list[str]) -> None:
    log = open(cluster.folder / "log" / f"{name}.log", "ab")  # noqa: SIM115 - the daemon's, closed on stop
    proc = subprocess.Popen(cmd, env=cluster.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    cluster.daemons.append((name, proc))


def _configs(folder: Path, ports: dict[str, int]) -> tuple[str, str]:
    host, cores = socket.gethostname().split(".")[0], os.cpu_count() or 1
    sock = folder / "munge" / "socket"
    slurm = f"""
ClusterName={CLUSTER}
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ports["ctld"]}
SlurmdPort={ports["slurmd"]}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={sock},cred_expire=10
CredType=cred/munge
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={ports["dbd"]}
AccountingStoragePass={sock}
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
SchedulerParameters=bf_interval=1,sched_interval=1
KillWait=5
MinJobAge=600
NodeName={host} NodeAddr=127.0.0.1 CPUs={cores} State=UNKNOWN
PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
    dbd = f"""
AuthType=auth/munge
AuthInfo=socket={sock}
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort={ports["dbd"]}
SlurmUser=root
PidFile={folder}/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={ports["db"]}
StorageUser=root
StorageLoc=slurm_acct
"""
    return slurm, dbd


def start(folder: Path) -> Cluster:
    """Start munge, MariaDB, slurmdbd, slurmctld and slurmd in ``folder``; return when the node is idle."""
    folder = Path(folder).resolve()
    for sub in ("munge", "db", "state", "spool", "log"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / "munge").chmod(0o700)
    key = folder / "munge" / "key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    ports = {name: _free_port() for name in ("ctld", "slurmd", "dbd", "db")}
    slurm, dbd = _configs(folder, ports)
    (folder / "slurm.conf").write_text(slurm)
    (folder / "slurmdbd.conf").write_text(dbd)  # slurmdbd reads it beside slurm.conf
    (folder / "slurmdbd.conf").chmod(0o600)
    env = {**os.environ, "SLURM_CONF": str(folder / "slurm.conf")}
    cluster = Cluster(folder, env)
    try:
        _bring_up(cluster, ports)
    except BaseException:
        stop(cluster)
        raise
    return cluster


def _bring_up(cluster: Cluster, ports: dict[str, int]) -> None:
    folder = cluster.folder
    sock = folder / "munge" / "socket"
    _daemon(
        cluster,
        "munged",
        ["munged", "--foreground", "--force", f"--socket={sock}", f"--key-file={folder}/munge/key"]
        + [f"--pid-file={folder}/munge/pid", f"--log-file={folder}/log/munge.log", f"--seed-file={folder}/munge/seed"],
    )
    _wait("munged", sock.exists, cluster)
    subprocess.run(
        ["mariadb-install-db", "--no-defaults", f"--datadir={folder}/db", "--auth-root-authentication-method=normal"]
        + ["--skip-test-db", "--user=root"],
        check=True,
        capture_output=True,
    )
    _daemon(
        cluster,
        "mariadbd",
        ["mariadbd", "--no-defaults", f"--datadir={folder}/db", f"--socket={folder}/db.sock", "--user=root"]
        + [f"--port={ports['db']}", "--bind-address=127.0.0.1", f"--pid-file={folder}/db.pid"],
    )
    _wait("MariaDB", _listening(ports["db"]), cluster)
    _daemon(cluster, "slurmdbd", ["slurmdbd", "-D"])
    _wait("slurmdbd", _listening(ports["dbd"]), cluster)
    cluster.run("sacctmgr", "--immediate", "add", "cluster", CLUSTER)
    _daemon(cluster, "slurmctld", ["slurmctld", "-D", "-i"])
    _daemon(cluster, "slurmd", ["slurmd", "-D"])

    def idle() -> bool:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=cluster.env, capture_output=True, text=True).stdout
        return out.strip() == "idle"

    _wait("the node", idle, cluster)


def stop(cluster: Cluster) -> None:
    """Cancel every job of the cluster, then stop each daemon this module started, by pid (SIGTERM, then SIGKILL)."""
    if any(name == "slurmctld" and proc.poll() is None for name, proc in cluster.daemons):
        subprocess.run(["scancel", f"--partition={cluster.partition}"], env=cluster.env, capture_output=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            out = subprocess.run(["squeue", "-h"], env=cluster.env, capture_output=True, text=True).stdout
            if not out.strip():
                break
            time.sleep(0.5)
    for _name, proc in reversed(cluster.daemons):
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
    cluster.daemons.clear()


if __name__ == "__main__":
    import tempfile

    why = unavailable()
    if why:
        raise SystemExit(f"slurm_cluster: {why}")
    here = start(Path(tempfile.mkdtemp(prefix="slurm-")))
    print(f"export SLURM_CONF={here.env['SLURM_CONF']}  # Ctrl-C stops the cluster", flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        stop(here)
