"""The embedded default data, dataset loading errors, and the pixel_values transform."""

import inspect
from pathlib import Path

import datasets
import numpy as np
import PIL.Image
import pytest
import torch
from torch.utils.data import DataLoader

from hf_simvq import SimVQImageProcessor
from hf_simvq.training.data import (
    TEST_PHOTOS,
    TRAIN_PHOTOS,
    VALIDATION_PHOTOS,
    PixelValuesTransform,
    default_image_datasets,
    default_image_split,
    first_examples,
    load_image_dataset,
    training_and_validation_data,
    with_pixel_values,
)


@pytest.fixture(scope="module")
def small_default_data():
    return default_image_datasets(resolution=32, num_train_images=24, num_validation_images=12, seed=0)


def _pixels(split) -> list[bytes]:
    return [image.tobytes() for image in split["image"]]


def test_default_data_is_deterministic_rgb_crops_with_validation_from_unseen_photos(small_default_data):
    data = small_default_data
    assert data["train"].num_rows == 24 and data["validation"].num_rows == 12
    assert all(image.mode == "RGB" and image.size == (32, 32) for image in data["validation"]["image"])
    validation_photos = {Path(path).stem for _, path in VALIDATION_PHOTOS}
    train_sources = {source.split("@")[0] for source in data["train"]["source"]}
    validation_sources = {source.split("@")[0] for source in data["validation"]["source"]}
    assert validation_sources <= validation_photos and not train_sources & validation_photos
    assert len({source.split("@")[1] for source in data["train"]["source"]}) > 1  # several scales

    again = default_image_datasets(resolution=32, num_train_images=24, num_validation_images=12, seed=0)
    other_seed = default_image_datasets(resolution=32, num_train_images=24, num_validation_images=12, seed=1)
    assert _pixels(again["train"]) == _pixels(data["train"])
    assert _pixels(again["validation"]) == _pixels(data["validation"])
    assert _pixels(other_seed["train"]) != _pixels(data["train"])


def test_default_validation_split_holds_thousands_of_tokens():
    defaults = inspect.signature(default_image_datasets).parameters
    tokens_per_image = (defaults["resolution"].default // 8) ** 2
    assert defaults["num_validation_images"].default * tokens_per_image >= 16_384


def test_default_data_rejects_a_resolution_no_photo_can_hold():
    with pytest.raises(ValueError, match="smaller --resolution"):
        default_image_datasets(resolution=4096, num_train_images=1, num_validation_images=1)


@pytest.fixture
def image_folder(tmp_path):
    rng = np.random.default_rng(0)
    for index in range(3):
        PIL.Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(tmp_path / f"{index}.png")
    return tmp_path


def test_image_folder_loads_and_reports_missing_split_and_column(image_folder):
    dataset = load_image_dataset(train_data_dir=str(image_folder), resolution=32)
    assert dataset.num_rows == 3 and "image" in dataset.column_names
    with pytest.raises(ValueError, match=r"no split 'validation'; available splits: \['train'\]"):
        load_image_dataset(train_data_dir=str(image_folder), split="validation")
    with pytest.raises(ValueError, match=r"no column 'img'; available columns: \['image'\]"):
        load_image_dataset(train_data_dir=str(image_folder), image_column="img")


def test_images_smaller_than_the_resolution_are_rejected(image_folder):
    with pytest.raises(ValueError, match="40 pixels is smaller than --resolution 64"):
        load_image_dataset(train_data_dir=str(image_folder), resolution=64)
    small = PIL.Image.new("RGB", (20, 50))
    with pytest.raises(ValueError, match="smaller than --resolution 32"):
        PixelValuesTransform(32)({"image": [small]})


def test_missing_or_empty_sources_name_the_problem(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image_dataset(train_data_dir=str(tmp_path / "absent"))
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match="holds no image files"):
        load_image_dataset(train_data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="exactly one of"):
        load_image_dataset()

    def not_found(*args, **kwargs):
        raise datasets.exceptions.DatasetNotFoundError("Dataset 'someone/nothing' doesn't exist on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", not_found)
    with pytest.raises(FileNotFoundError, match="Could not load the dataset 'someone/nothing'"):
        load_image_dataset(dataset_name="someone/nothing")


def test_evaluation_transform_is_the_processor_and_training_transform_crops_and_flips():
    image = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8))
    pixel_values = PixelValuesTransform(32)({"image": [image]})["pixel_values"]
    expected = SimVQImageProcessor.from_image_size(32)(image, return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(pixel_values, expected)

    square = image.crop((0, 0, 32, 32))
    original = PixelValuesTransform(32)({"image": [square]})["pixel_values"][0]
    augmented = PixelValuesTransform(32, augment=True)({"image": [square] * 16}, list(range(16)))["pixel_values"]
    is_flipped = [torch.equal(sample, original.flip(-1)) for sample in augmented]
    assert all(flipped or torch.equal(sample, original) for flipped, sample in zip(is_flipped, augmented, strict=True))
    assert 0 < sum(is_flipped) < 16
    wide = PixelValuesTransform(32, augment=True)({"image": [image] * 4}, [0, 1, 2, 3])["pixel_values"]
    assert wide.shape == (4, 3, 32, 32) and wide.min() >= -1 and wide.max() <= 1


def test_training_crops_depend_only_on_seed_epoch_and_example_index():
    """The property exact resumption rests on: no global RNG, no dependence on batch composition or fetch order."""
    image = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8))
    transform = PixelValuesTransform(32, augment=True, seed=1)
    batch = transform({"image": [image] * 8}, list(range(8)))["pixel_values"]
    torch.manual_seed(123)
    np.random.seed(123)
    alone = transform({"image": [image]}, [5])["pixel_values"][0]
    assert torch.equal(alone, batch[5])
    assert sum(not torch.equal(batch[0], crop) for crop in batch[1:]) >= 5  # indices draw different crops
    transform.set_epoch(1)
    assert not torch.equal(transform({"image": [image] * 8}, list(range(8)))["pixel_values"], batch)
    other_seed = PixelValuesTransform(32, augment=True, seed=2)
    assert not torch.equal(other_seed({"image": [image] * 8}, list(range(8)))["pixel_values"], batch)
    with pytest.raises(ValueError, match="one index per image"):
        transform({"image": [image]})


def test_dataloader_workers_crop_as_the_main_process_after_set_epoch(image_folder):
    """Batches in a shuffled order, read by worker processes, get each example's (seed, epoch, index) crop."""
    folder = load_image_dataset(train_data_dir=str(image_folder), resolution=32)
    dataset = with_pixel_values(folder, 32, augment=True, seed=3)
    dataset.set_epoch(2)
    expected = PixelValuesTransform(32, augment=True, seed=3)
    expected.set_epoch(2)
    order = [2, 0, 1]
    loader = DataLoader(dataset, batch_size=2, sampler=order, num_workers=2)
    served = torch.cat([batch["pixel_values"] for batch in loader])
    torch.testing.assert_close(served, expected(folder[order], order)["pixel_values"], rtol=0, atol=0)


def test_with_pixel_values_serves_map_style_and_streaming_datasets(small_default_data):
    validation = small_default_data["validation"]
    example = with_pixel_values(validation, 32)[0]
    assert set(example) == {"pixel_values"} and example["pixel_values"].shape == (3, 32, 32)
    streamed = next(iter(with_pixel_values(validation.to_iterable_dataset(), 32)))
    assert set(streamed) == {"pixel_values"}
    torch.testing.assert_close(torch.as_tensor(streamed["pixel_values"]), example["pixel_values"])


def test_stream_crops_stay_distinct_across_dataloader_workers():
    """Each worker counts its share of a stream from 0; the keys must still differ between examples."""
    image = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8))
    stream = datasets.Dataset.from_dict({"image": [image] * 4}).to_iterable_dataset(num_shards=2)
    loader = DataLoader(with_pixel_values(stream, 32, augment=True, seed=0), batch_size=1, num_workers=2)
    crops = [batch["pixel_values"][0] for batch in loader]
    assert len(crops) == 4
    assert all(not torch.equal(crops[i], crops[j]) for i in range(4) for j in range(i + 1, 4))


def test_load_image_split_serves_the_default_data_split_by_split():
    from hf_simvq.training.data import load_image_split

    both = default_image_datasets(resolution=16, num_train_images=6, num_validation_images=4, seed=0)
    validation = load_image_split("validation", 16, 4)
    assert validation["source"] == both["validation"]["source"]
    pixels = [image.tobytes() for image in validation["image"]]
    assert pixels == [image.tobytes() for image in both["validation"]["image"]]
    assert default_image_split("train", 16, 6)["source"] == both["train"]["source"]
    with pytest.raises(ValueError, match="splits \\['test', 'train', 'validation'\\], not 'dev'"):
        load_image_split("dev", 16, 4)


def test_default_test_split_comes_from_photos_no_training_run_sees():
    test = default_image_split("test", 32, 64)
    test_photos = {Path(path).stem for _, path in TEST_PHOTOS}
    seen_photos = {Path(path).stem for _, path in TRAIN_PHOTOS + VALIDATION_PHOTOS}
    sources = {source.split("@")[0] for source in test["source"]}
    assert sources <= test_photos and len(sources) > 3 and not test_photos & seen_photos
    assert all(image.mode == "RGB" and image.size == (32, 32) for image in test["image"])
    assert set(default_image_datasets(16, 2, 2)) == {"train", "validation"}  # training never gets the test split


def test_a_folder_without_validation_split_gives_up_held_out_images(tmp_path, caplog):
    rng = np.random.default_rng(1)
    for index in range(10):
        PIL.Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / f"{index}.png")
    with caplog.at_level("WARNING"):
        train, validation = training_and_validation_data(32, 0, 3, train_data_dir=str(tmp_path))
    assert (len(train), len(validation)) == (7, 3)
    assert "No 'validation' split: validating on 3 held-out images." in caplog.text
    train_pixels = {example["pixel_values"].numpy().tobytes() for example in train}
    assert not train_pixels & {example["pixel_values"].numpy().tobytes() for example in validation}


def test_first_examples_takes_from_map_style_datasets_and_streams(small_default_data):
    split = small_default_data["validation"]
    assert [example["source"] for example in first_examples(split, 5)] == split["source"][:5]
    assert len(first_examples(split, 100)) == split.num_rows
    assert [example["source"] for example in first_examples(split.to_iterable_dataset(), 5)] == split["source"][:5]
