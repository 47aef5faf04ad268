"""The paper's experiments: which runs, at which scale, gathered into its figures and tables.

registry   every figure and table: its runs, presets and scales
reproduce  one command per figure or table
sweep      many runs over the devices of one machine, resumable
slurm      the same runs as Slurm jobs through submitit, requeued and resumed past time limits
tune       one preset's hyper-parameter grid (Appendix B.1) through the sweep
tables     the tables as text, CSV, JSON and Markdown
report     one HTML page of everything reproduced
compare    runs side by side: configurations, measures, training curves, CSV files
demo       mixup against a baseline on the embedded digits data
"""
