"""The dataset catalog: one spec per dataset, and a new dataset added in one place goes through the whole toolkit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mixcollapse import catalog
from mixcollapse.catalog import DatasetSpec, Files
from mixcollapse.cli import main
from mixcollapse.config import ConfigError, load_config, num_classes
from mixcollapse.data.fake import ensure_data, synthetic_images
from mixcollapse.data.formats import ImageTensors
from mixcollapse.data.readers import Images
from mixcollapse.experiments.paper import PAPER_DATASETS, get_experiment


def test_every_table_reads_the_catalog():
    assert set(PAPER_DATASETS) <= set(catalog.dataset_names())
    assert num_classes(load_config("digits", ["data.name=cifar100"])) == 100
    assert catalog.title("fashionmnist") == "FashionMNIST" and catalog.get_spec("cifar10").sizes == (50000, 10000)
    with pytest.raises(ConfigError, match="data.name='imagenet' is not one of: digits, fashionmnist"):
        load_config("digits", ["data.name=imagenet"])


def test_the_cifar_archives_are_checked_against_torchvision_md5():
    from torchvision.datasets import CIFAR10, CIFAR100

    assert catalog.get_spec("cifar10").files.archive_md5 == CIFAR10.tgz_md5
    assert catalog.get_spec("cifar100").files.archive_md5 == CIFAR100.tgz_md5


# ---- a new dataset, registered in one place ------------------------------------------------------

STRIPES_FILE = "stripes.npz"


def read_stripes(spec: DatasetSpec, cfg, root: Path, augment: bool) -> Images:
    """uint8 images (N, 1, 12, 12) and labels in one .npz file, normalised with the spec's statistics."""
    with np.load(root / STRIPES_FILE) as f:
        sets = [(torch.from_numpy(f[f"{s}_x"]).float() / 255 - spec.mean[0]) / spec.std[0] for s in ("train", "test")]
        labels = [f["train_y"], f["test_y"]]
    return Images(
        ImageTensors(sets[0], labels[0]),
        ImageTensors(sets[1], labels[1]),
        ["a", "b", "c", "d"],
        spec.mean,
        spec.std,
        spec.image_size,
        spec.in_channels,
    )


def write_stripes(root) -> Path:
    """Synthetic stripes in the dataset's one-file format (what ``data.fake`` writes for the built-in ones)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "FAKE_DATA.txt").write_text("synthetic stripes\n")
    train_y, test_y = np.arange(160) % 4, np.arange(40) % 4
    np.savez(
        root / STRIPES_FILE,
        train_x=synthetic_images(train_y, 4, 12, 1, 0, 0),
        train_y=train_y,
        test_x=synthetic_images(test_y, 4, 12, 1, 0, 1),
        test_y=test_y,
    )
    return root


STRIPES = DatasetSpec(
    name="stripes",
    title="Stripes",
    read=read_stripes,
    num_classes=4,
    image_size=12,
    in_channels=1,
    mean=(0.5,),
    std=(0.25,),
    sizes=(160, 40),
    files=Files(paths=(STRIPES_FILE,), expected=STRIPES_FILE, how="write it with write_stripes({root})"),
    fake=write_stripes,
)


@pytest.fixture
def stripes():
    catalog.register(STRIPES)
    yield STRIPES
    catalog.unregister(STRIPES.name)


def test_a_registered_dataset_trains_analyses_and_draws(stripes, tmp_path, capsys):
    source = ensure_data(
        load_config("digits", ["data.name=stripes", f"data.root={tmp_path / 'none'}"]).data, allow_fake=True
    )
    assert source.kind == "fake" and (Path(source.root) / STRIPES_FILE).is_file()  # the spec's own writer
    run = tmp_path / "run"
    settings = [
        "data.name=stripes",
        f"data.root={source.root}",
        "model.hidden=16",
        "train.epochs=3",
        "train.batch_size=32",
        "train.progress=false",
        "analysis.pairs_per_class_pair=8",
        "analysis.test_pairs=16",
    ]
    assert main(["train", "--preset", "digits", "--out", str(run), *settings]) == 0
    assert main(["analyze", str(run)]) == 0
    analysis = run / "analysis" / "last"
    summary = json.loads((analysis / "analysis.json").read_text())
    assert summary["num_pairs"] == 3 * 8 * 2 and summary["dataset"] == "stripes" and summary["synthetic_data"]
    assert set(summary["class_names"]) <= {"a", "b", "c", "d"} and summary["nc1"] is not None
    figure = analysis / "figures" / "configuration.png"
    assert figure.is_file() and figure.stat().st_size > 10_000
    assert "Stripes (SYNTHETIC" in capsys.readouterr().out + (analysis / "figures" / "configuration.html").read_text()


def test_a_registered_dataset_changes_no_figure_of_the_paper(stripes):
    assert "stripes" not in {k.dataset for k in get_experiment("fig1").runs}
    assert "stripes" in catalog.dataset_names() and "stripes" not in PAPER_DATASETS


def test_a_name_is_registered_once():
    with pytest.raises(ValueError, match="already registered"):
        catalog.register(catalog.get_spec("digits"))
    with pytest.raises(ValueError, match="without '-'"):
        catalog.register(DatasetSpec(name="my-data", title="x", read=read_stripes))
