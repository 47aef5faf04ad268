"""Training runs as Slurm jobs through submitit (``--launcher slurm`` on ``sweep`` and ``reproduce``).

Each training of a sweep or an experiment becomes one job running the same command as the
subprocess launcher, ``python -m mixcollapse train --preset CONFIG --out RUN --resume``, with torchrun
inside for several GPUs (``gpus_per_node``) and, across ``nodes``, torchrun's c10d rendezvous on the
job's first node. Resumable at two levels: a finished run is never submitted (the sweep skips it),
and a job that Slurm preempts or that reaches its time limit is requeued by submitit's checkpoint
hook and continues from the run's last checkpoint (``--resume``), as often as ``timeouts`` allows.
A failed job is reported as a failed run (its log: ``RUN.log`` beside the run, submitit's own files in
``folder``); rerunning the command resubmits it, and it resumes.

``cluster="local"`` uses submitit's local executor: the same jobs as real subprocesses of this
machine, with time limits and requeues, no Slurm (how the tests run it; useful to try a setup).
Time limit default: twice the run's estimated GPU time on an H100 (experiments.cost), between
1 and 24 hours; a run longer than its limit continues over several jobs.
"""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from mixcollapse.config import ConfigError, ExperimentConfig, load_config
from mixcollapse.experiments.cost import config_flops, gpu_seconds
from mixcollapse.experiments.launch import Job, Runner, Slot, job_environment, train_args, train_command

CLUSTERS = ("slurm", "local")
RENDEZVOUS_PORT = 29500
RUNNING_STATES = ("PENDING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "RESIZING", "SUSPENDED", "UNKNOWN")
UNKNOWN_MINUTES = 240  # the time limit of a run whose cost is not known
SLURM_KILL_WAIT_S = 600  # longer than any cluster's KillWait (Slurm's default: 30 s)


@dataclass(frozen=True)
class SlurmOptions:
    """Where and how jobs are submitted."""

    folder: Path  # submitit's scripts, pickles and logs
    cluster: str = "slurm"  # slurm, or local: submitit's local executor (subprocesses of this machine)
    partition: str | None = None
    time_min: float | None = None  # per job; None: from the run's estimated time (see the module docstring)
    gpus_per_node: int = 1  # 0: CPU jobs
    nodes: int = 1
    cpus_per_task: int = 8
    timeouts: int = 20  # requeues allowed after a time limit or a preemption
    signal_delay_s: int = 120  # the warning before the time limit, to stop the training cleanly
    max_jobs: int = 256  # in the queue at once


def check_options(options: SlurmOptions) -> SlurmOptions:
    """ValueError with one line for options that cannot work; submitit's absence says how to install it."""
    if options.cluster not in CLUSTERS:
        raise ValueError(f"--cluster {options.cluster} is not one of: {', '.join(CLUSTERS)}")
    for name in ("nodes", "cpus_per_task", "max_jobs"):
        if getattr(options, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} {getattr(options, name)} must be >= 1")
    if options.timeouts < 0 or options.signal_delay_s < 1:
        raise ValueError("--timeouts must be >= 0 and --signal-delay >= 1 (seconds)")
    if options.gpus_per_node < 0 or (options.time_min is not None and options.time_min <= 0):
        raise ValueError("--gpus-per-job must be >= 0 and --time > 0 (minutes)")
    if options.cluster == "local" and options.nodes > 1:
        raise ValueError("--cluster local runs on this machine: --nodes must be 1")
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise ValueError("--launcher slurm needs submitit: pip install submitit") from None
    return options


def default_minutes(cfg: ExperimentConfig, gpus: int, until: int | None = None) -> int:
    """Twice the run's estimated H100 time (to epoch ``until``: a halving rung) over ``gpus`` GPUs, between 60 and
    1440 minutes (UNKNOWN_MINUTES when there is no estimate)."""
    total = config_flops(cfg, until=until)
    if total is None:
        return UNKNOWN_MINUTES
    minutes = 2 * gpu_seconds(total, "H100", gpus) / 60
    return int(min(1440, max(60, math.ceil(minutes))))


class TrainingJob:
    """What one submitted job runs: the training command, as a child process; submitit's checkpoint hook stops
    it and requeues the same job, which resumes from the run's last checkpoint."""

    def __init__(self, job: Job, gpus_per_node: int, nodes: int) -> None:
        self.job, self.gpus_per_node, self.nodes = job, gpus_per_node, nodes
        self._child: subprocess.Popen | None = None
        self._stopped_by_slurm = False

    def command(self) -> list[str]:
        """The subprocess launcher's command on this node's GPUs; across nodes, torchrun's c10d rendezvous."""
        per_node = max(1, self.gpus_per_node)
        if self.nodes == 1:
            return train_command(self.job, Slot(nproc=per_node))
        import submitit

        env = submitit.JobEnvironment()
        return [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nnodes={self.nodes}",
            f"--nproc_per_node={per_node}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={env.hostnames[0]}:{RENDEZVOUS_PORT}",
            f"--rdzv-id={env.job_id}",
            *train_args(self.job),
        ]

    def __call__(self) -> int:
        env = job_environment(Slot())
        env.pop("CUDA_VISIBLE_DEVICES")  # the GPUs Slurm gave this job
        cmd = self.command()
        self._stopped_by_slurm = False
        previous = signal.signal(signal.SIGTERM, self._note_stop)
        self.job.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.job.log_path, "a") as log:
            log.write(
                f"\n# {time.strftime('%Y-%m-%d %H:%M:%S')} job {_job_id()} (process {os.getpid()}): {' '.join(cmd)}\n"
            )
            log.flush()
            self._child = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                while (code := self._child.poll()) is None:  # not wait(): it would hold a lock the signal handler needs
                    time.sleep(0.2)
            finally:
                self._stop_child()
            if code != 0 and self._stopped_by_slurm:
                log.write(f"# job {_job_id()}: stopped by Slurm (SIGTERM); the run resumes when the job is requeued\n")
                log.flush()
                time.sleep(SLURM_KILL_WAIT_S)  # Slurm ends this process (requeue, scancel, preemption) before then
        signal.signal(signal.SIGTERM, previous)
        if code != 0:
            raise RuntimeError(f"training exited with code {code}; see {self.job.log_path}")
        return code

    def _note_stop(self, signum, frame) -> None:
        """SIGTERM from Slurm (``scontrol requeue``, ``scancel``, a preemption) reaches the training too, which saves
        its last epoch and exits: that is no failure, so no result may be written (the waiting side would read
        it as the job's end while Slurm requeues it). Slurm kills this process after its KillWait. Under submitit's
        local executor (no SLURM_JOB_ID) nobody would: there a SIGTERM is a failure like any other."""
        self._stopped_by_slurm = "SLURM_JOB_ID" in os.environ

    def checkpoint(self, *args, **kwargs):
        """submitit's hook before a requeue (time limit, preemption): stop the training, submit the same job again."""
        from submitit.helpers import DelayedSubmission

        self._stop_child()
        return DelayedSubmission(TrainingJob(self.job, self.gpus_per_node, self.nodes))

    def _stop_child(self) -> None:
        """SIGTERM to the training (it writes its last finished epoch, training.interrupt), SIGKILL after 60 s; os only,
        as this runs inside submitit's signal handler, possibly while the main code is in Popen.poll."""
        child, self._child = self._child, None
        if child is None or child.returncode is not None:
            return
        try:
            os.kill(child.pid, signal.SIGTERM)
            for _ in range(600):
                if os.waitpid(child.pid, os.WNOHANG)[0] != 0:
                    return
                time.sleep(0.1)
            os.kill(child.pid, signal.SIGKILL)
            os.waitpid(child.pid, 0)
        except ChildProcessError:  # already reaped
            pass
        except ProcessLookupError:
            pass

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_child": None}


def _job_id() -> str:
    import submitit

    try:
        return str(submitit.JobEnvironment().job_id)
    except RuntimeError:  # not inside a submitit job
        return str(os.getpid())


def slurm_runner(options: SlurmOptions, log=None) -> Runner:
    """A sweep runner that submits each job and waits for it (requeues included); 0 when it finished."""
    check_options(options)
    lock = threading.Lock()

    def run(job: Job, slot: Slot) -> int:
        import submitit

        minutes = options.time_min or _minutes(job, options)
        warning_s = min(options.signal_delay_s, int(minutes * 60) // 2)  # a short job still runs half its time
        with lock:  # one executor per job: its parameters are the job's
            if options.cluster == "local":
                executor = submitit.LocalExecutor(str(options.folder), max_num_timeout=options.timeouts)
                executor.update_parameters(
                    timeout_min=minutes, gpus_per_node=options.gpus_per_node, tasks_per_node=1, signal_delay_s=warning_s
                )
            else:
                executor = submitit.AutoExecutor(
                    str(options.folder), cluster="slurm", slurm_max_num_timeout=options.timeouts
                )
                extra = {"slurm_partition": options.partition} if options.partition else {}
                executor.update_parameters(
                    name=job.name.replace("/", "_"),
                    timeout_min=math.ceil(minutes),
                    nodes=options.nodes,
                    tasks_per_node=1,
                    gpus_per_node=options.gpus_per_node,
                    cpus_per_task=options.cpus_per_task,
                    slurm_signal_delay_s=warning_s,
                    **extra,
                )
            submitted = executor.submit(TrainingJob(job, options.gpus_per_node, options.nodes))
        if log is not None:
            log(f"[slurm] {job.name}: job {submitted.job_id}")
        try:
            submitted.result()
        except Exception as err:  # noqa: BLE001 - a failed job is a failed run; its log says why
            state = _final_state(submitted)
            with open(job.log_path, "a") as out:
                out.write(f"\n# job {submitted.job_id} ended {state}: {_reason(err)}\n")
            if log is not None:
                log(f"[slurm] {job.name}: job {submitted.job_id} ended {state}; log: {job.log_path}")
            return 1
        return 0

    return run


def _minutes(job: Job, options: SlurmOptions) -> int:
    """The default time limit of ``job``; UNKNOWN_MINUTES when its config does not load (the job then fails in Slurm,
    with the config's error in its log, like any other failed run)."""
    try:
        cfg = load_config(job.config_path)
    except (ConfigError, OSError):
        return UNKNOWN_MINUTES
    return default_minutes(cfg, options.gpus_per_node * options.nodes, job.until)


def _reason(err: Exception) -> str:
    """The line of submitit's report that says why: the exception the job raised, else its first line."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    raised = [line for line in lines if re.match(r"^[\w.]+(Error|Exception): ", line)]
    if raised:
        return raised[-1]
    return lines[0] if lines else type(err).__name__


def _final_state(submitted, wait_s: float = 60) -> str:
    """The job's final state as Slurm's accounting (sacct) or submitit's local executor gives it: FAILED, CANCELLED,
    ...; the accounting learns of a job's end a little after its result file appears, so wait for it (bounded)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            state = str(submitted.get_info(mode="force").get("State") or submitted.state)
        except Exception:  # noqa: BLE001 - the state only decorates the report
            state = "UNKNOWN"
        if state.split(" ")[0] not in RUNNING_STATES or time.monotonic() > deadline:
            return state
        time.sleep(1)


def slurm_slots(options: SlurmOptions) -> list[Slot]:
    """As many slots as jobs allowed in the queue at once (the cluster, not this machine, places them)."""
    return [Slot() for _ in range(options.max_jobs)]
