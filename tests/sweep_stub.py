"""A runner that pretends to train, for tests of how sweeps schedule, resume, pick and prune."""

from __future__ import annotations

import threading
import time

import torch

from mixcollapse.config import load_config
from mixcollapse.experiments.launch import Job, Slot
from mixcollapse.training.rundir import append_metrics, last_checkpoint_path, prepare_run_dir, read_metrics


class StubRunner:
    """Pretends to train: writes config, metrics rows and last.pt; records calls, slots and overlap."""

    def __init__(self, accuracy=lambda job, epoch: 0.5, fail=(), delay=0.0):
        self.calls, self.accuracy, self.fail, self.delay = [], accuracy, set(fail), delay
        self.jobs: list[Job] = []  # every job asked for, in order (with its rung: job.until)
        self.active, self.max_active, self.active_devices = 0, 0, set()
        self.lock = threading.Lock()

    def __call__(self, job: Job, slot: Slot) -> int:
        with self.lock:
            assert not (set(slot.devices) & self.active_devices), "two jobs on one GPU at once"
            self.active_devices |= set(slot.devices)
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self.calls.append((job.name, slot.devices))
            self.jobs.append(job)
        time.sleep(self.delay)
        try:
            if job.run_dir.name in self.fail:
                return 1
            cfg = load_config(job.config_path)
            prepare_run_dir(job.run_dir, cfg, resume=True)
            rows = read_metrics(job.run_dir)
            for epoch in range(len(rows) + 1, job.target + 1):  # resumed where the last call stopped
                row = {"epoch": epoch, "test_accuracy": self.accuracy(job, epoch), "test_ece": 0.1}
                append_metrics(job.run_dir, row)
            torch.save({"fake": True}, last_checkpoint_path(job.run_dir))
            return 0
        finally:
            with self.lock:
                self.active -= 1
                self.active_devices -= set(slot.devices)
