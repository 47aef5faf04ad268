"""Data: the paper's datasets read from their real on-disk formats, found where they live, and loaders.

datasets  SPECS, discovery of the files, readers of the IDX and CIFAR formats, build_datasets/build_loaders
fake      synthetic files in the real formats, for tests and the tiny scale (never the paper's numbers)
"""
