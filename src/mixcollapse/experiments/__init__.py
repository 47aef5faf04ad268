"""The paper's experiments: which runs, at which scale, gathered into its figures and tables.

Modules, top to bottom (a contract in pyproject.toml keeps imports running down):

reproduce  one command per figure or table; tune (one preset's grid), report (one HTML page of
           everything reproduced), compare (runs side by side), demo (mixup vs baseline on digits)
steps      the four analysis steps of reproduce: configuration, trajectory, classifier, table
runs       the runs of a reproduction: their data, their training (sweeps first), their results
sweep      Appendix B.1's grid search over many runs, resumable
slurm      the same runs as Slurm jobs through submitit, requeued and resumed past time limits
launch     jobs, slots and runners: this machine's GPUs or CPU, subprocesses or in process
cost       FLOPs of a run and GPU-hours of an experiment at full scale
scales     tiny, cpu and full: a run's config at a scale
paper      every figure and table of the paper: runs, variants, datasets, the paper's values
grid       the --grid syntax; tables: tables as text, CSV, JSON and Markdown
"""
