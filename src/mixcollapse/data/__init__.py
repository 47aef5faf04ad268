"""Data: the catalog's datasets (``mixcollapse.catalog``) read from their real on-disk formats, and loaders.

Modules, bottom to top (a contract in pyproject.toml keeps imports running down):

locate      where a dataset's files are: search, download, one-line errors (no torch)
formats     the IDX files of (Fashion)MNIST and in-memory images (no torchvision)
cifar       CIFAR's pickled batches, unpickled safely (torchvision's readers)
transforms  torchvision's per-sample augmentation and normalisation
readers     the readers and downloads the catalog names (digits, FashionMNIST, CIFAR10/100)
folders     your own images, DIR/train/<class>/ and DIR/test/<class>/ (data.name=imagefolder)
batches     in-memory datasets as tensors on the training device, batches with per-image crop and flip
datasets    build_datasets (any catalog dataset) and build_loaders
fake        synthetic files in the real formats, for tests and the tiny scale (never the paper's numbers)
"""
