"""Training with mixup (section 2, Appendix B.1) into a run directory.

loop        train(cfg, run_dir), train_one_epoch, evaluate
optim       SGD/AdamW and the learning-rate schedules
checkpoint  one checkpoint dict, written atomically, loaded with weights_only
rundir      the run directory: config.yaml, metrics.jsonl, checkpoints/
dist        ranks under torchrun (nccl or gloo), devices
machine     the cores this process may use (no torch import)
board       TensorBoard event files of a run (scalars, hyper-parameters, analysed configurations)
"""
