"""Data: the paper's datasets read from their real on-disk formats, found where they live, and loaders.

specs     what each dataset is on disk, where it is installed, its statistics (no torch)
formats   the IDX files of (Fashion)MNIST and in-memory images (no torchvision)
cifar     CIFAR's pickled batches, unpickled safely (torchvision's readers)
datasets  discovery of the files, build_datasets and build_loaders; torchvision only for datasets with files
batches   the built-in datasets as tensors on the training device, batches with per-image crop and flip
folders   your own images, DIR/train/<class>/ and DIR/test/<class>/ (data.name=imagefolder)
fake      synthetic files in the real formats, for tests and the tiny scale (never the paper's numbers)
"""
