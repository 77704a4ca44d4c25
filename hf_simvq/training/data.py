"""Images for training and evaluating SimVQ tokenizers: the embedded default data, any `datasets` image dataset,
and the transform that turns an image column into `pixel_values`.

The default data needs no download: random crops of the CC0 / public-domain colour photos that ship inside the
scikit-image wheel (and scikit-learn's two sample photos when it is installed). Validation crops come from photos
that training never sees, so reconstruction and codebook-usage numbers measure generalisation, not memory.
"""

import logging
from pathlib import Path

import datasets
import numpy as np
import PIL.Image
import torch

from hf_simvq import SimVQImageProcessor
from hf_simvq.package_files import installed_package_file

logger = logging.getLogger(__name__)

# (package, file inside the package): colour photos only; the greyscale samples and charts would add little.
TRAIN_PHOTOS = (
    ("skimage", "data/astronaut.png"),
    ("skimage", "data/rocket.jpg"),
    ("skimage", "data/motorcycle_left.png"),
    ("skimage", "data/motorcycle_right.png"),
    ("skimage", "data/hubble_deep_field.jpg"),
    ("skimage", "data/retina.jpg"),
    ("skimage", "data/ihc.png"),
    ("sklearn", "datasets/images/china.jpg"),
)
VALIDATION_PHOTOS = (
    ("skimage", "data/coffee.png"),
    ("skimage", "data/chelsea.png"),
    ("sklearn", "datasets/images/flower.jpg"),
)
# A third set no training run sees, for a held-out evaluation of a tokenizer whose recipe was tuned on the validation
# photos: one colour portrait and greyscale scenes and textures (as RGB), unlike the colour photos above.
TEST_PHOTOS = (
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
    ("skimage", "data/camera.png"),
    ("skimage", "data/brick.png"),
    ("skimage", "data/grass.png"),
    ("skimage", "data/gravel.png"),
    ("skimage", "data/moon.png"),
    ("skimage", "data/coins.png"),
)
DEFAULT_SCALES = (1.0, 0.5, 0.25)
IMAGE_FILE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
NUM_EAGERLY_CHECKED_IMAGES = 16


def _installed_photos(photos: tuple[tuple[str, str], ...]) -> dict[str, PIL.Image.Image]:
    """The photos whose package is installed, by file stem, as RGB images (optional packages are skipped)."""
    found = {}
    for package, relative_path in photos:
        path = installed_package_file(package, relative_path)
        if path is not None:
            with PIL.Image.open(path) as photo:
                found[path.stem] = photo.convert("RGB")
    return found


def _random_crops(
    photos: dict[str, PIL.Image.Image], num_images: int, resolution: int, scales: tuple[float, ...], seed: int
) -> dict[str, list]:
    """`num_images` crops of `resolution`², each from a random photo downscaled by a random scale."""
    versions = []  # (name, downscaled photo) for every scale at which the photo still holds one crop
    for name, photo in photos.items():
        for scale in scales:
            size = (round(photo.width * scale), round(photo.height * scale))
            if min(size) >= resolution:
                versions.append((f"{name}@{scale:g}", photo.resize(size, PIL.Image.Resampling.LANCZOS)))
    if not versions:
        raise ValueError(
            f"None of the embedded photos ({', '.join(photos)}) is at least {resolution}px on its short side; use a "
            "smaller --resolution with the default data, or pass --dataset_name / --train_data_dir."
        )
    rng = np.random.default_rng(seed)
    images, sources = [], []
    for _ in range(num_images):
        source, photo = versions[rng.integers(len(versions))]
        left = int(rng.integers(photo.width - resolution + 1))
        top = int(rng.integers(photo.height - resolution + 1))
        images.append(photo.crop((left, top, left + resolution, top + resolution)))
        sources.append(source)
    return {"image": images, "source": sources}


# Each split's crops come from its own child of the seed (SeedSequence children depend only on their index), so
# adding a split leaves the others' crops as they were.
DEFAULT_SPLITS = {"train": TRAIN_PHOTOS, "validation": VALIDATION_PHOTOS, "test": TEST_PHOTOS}


def default_image_split(
    split: str, resolution: int = 32, num_images: int = 2048, scales: tuple[float, ...] = DEFAULT_SCALES, seed: int = 0
) -> datasets.Dataset:
    """One split of the embedded default data: `num_images` crops of `resolution`² from that split's photos.

    Columns: `image` (PIL RGB) and `source` (`"<photo>@<scale>"`). Crops are taken from the photos at full size
    and downscaled by each of `scales`, so one split mixes fine texture and whole-object views. Training,
    validation and test use disjoint photos (a fixed split) and different random streams of `seed`; the result
    depends only on the arguments. Training runs use the first two; `test` is for `evaluate_tokenizer.py --split test`.
    """
    if split not in DEFAULT_SPLITS:
        raise ValueError(f"The embedded default data has the splits {sorted(DEFAULT_SPLITS)}, not {split!r}.")
    if resolution <= 0 or num_images <= 0:
        raise ValueError(f"resolution and the number of images must be positive, got {resolution} and {num_images}.")
    if not scales or any(not 0 < scale <= 1 for scale in scales):
        raise ValueError(f"scales must be downscaling factors in (0, 1], got {scales}.")
    stream = np.random.SeedSequence(seed).spawn(len(DEFAULT_SPLITS))[list(DEFAULT_SPLITS).index(split)]
    columns = _random_crops(
        _installed_photos(DEFAULT_SPLITS[split]), num_images, resolution, scales, stream.generate_state(1)[0]
    )
    features = datasets.Features({"image": datasets.Image(), "source": datasets.Value("string")})
    return datasets.Dataset.from_dict(columns, features=features)


def default_image_datasets(
    resolution: int = 32,
    num_train_images: int = 8192,
    num_validation_images: int = 2048,
    scales: tuple[float, ...] = DEFAULT_SCALES,
    seed: int = 0,
) -> datasets.DatasetDict:
    """Both splits of the embedded default data (see `default_image_split`). The defaults give
    2048 × (32/8)² = 32,768 validation tokens for an 8× downsampling tokenizer."""
    counts = {"train": num_train_images, "validation": num_validation_images}
    return datasets.DatasetDict(
        {split: default_image_split(split, resolution, count, scales, seed) for split, count in counts.items()}
    )


def load_image_split(
    split: str,
    resolution: int,
    num_default_images: int,
    dataset_name: str | None = None,
    train_data_dir: str | None = None,
    **source,
) -> datasets.Dataset | datasets.IterableDataset:
    """One split of the named dataset or image folder, or of the embedded default data when neither is given.

    The one place where the scripts choose their data: `source` holds the other keywords of `load_image_dataset`
    (`dataset_config_name`, `image_column`, `streaming`, `cache_dir`); the default data makes `num_default_images`
    crops for the split.
    """
    if dataset_name is None and train_data_dir is None:
        return default_image_split(split, resolution, num_default_images)
    return load_image_dataset(
        dataset_name=dataset_name, train_data_dir=train_data_dir, split=split, resolution=resolution, **source
    )


def check_image_size(image: PIL.Image.Image, resolution: int) -> None:
    """Reject an image smaller than the training resolution instead of silently upsampling it."""
    if min(image.size) < resolution:
        raise ValueError(
            f"An image of {image.width}×{image.height} pixels is smaller than --resolution {resolution}. Use a "
            "smaller --resolution, or remove or upscale the small images first."
        )


def load_image_dataset(
    dataset_name: str | None = None,
    dataset_config_name: str | None = None,
    train_data_dir: str | None = None,
    image_column: str = "image",
    streaming: bool = False,
    split: str = "train",
    resolution: int | None = None,
    cache_dir: str | None = None,
) -> datasets.Dataset | datasets.IterableDataset:
    """One split of a Hub / local `datasets` dataset (`dataset_name`) or of an image folder (`train_data_dir`).

    Fails early with a message that names the fix: a dataset that cannot be found, an empty folder, a missing
    split or column (the available ones are listed), or — checking the first few images when `resolution` is
    given — images smaller than the resolution (the transform checks every image again as it loads it).
    """
    if (dataset_name is None) == (train_data_dir is None):
        raise ValueError(
            "Pass exactly one of dataset_name (a Hub dataset or local dataset path) and train_data_dir (a folder of "
            "images); for the embedded default data, use default_image_datasets()."
        )
    if train_data_dir is not None:
        directory = Path(train_data_dir)
        if not directory.is_dir():
            raise FileNotFoundError(f"--train_data_dir {directory} does not exist or is not a directory.")
        if not any(path.suffix.lower() in IMAGE_FILE_SUFFIXES for path in directory.rglob("*")):
            raise ValueError(
                f"--train_data_dir {directory} holds no image files ({', '.join(sorted(IMAGE_FILE_SUFFIXES))}). "
                "Point it at a folder of images (optionally in train/ and validation/ subfolders)."
            )
        load_args, load_kwargs = ("imagefolder",), {"data_dir": str(directory)}
    else:
        load_args, load_kwargs = (dataset_name, dataset_config_name), {}
    try:
        dataset_dict = datasets.load_dataset(*load_args, **load_kwargs, streaming=streaming, cache_dir=cache_dir)
    except (datasets.exceptions.DatasetNotFoundError, ConnectionError, FileNotFoundError) as error:
        raise FileNotFoundError(
            f"Could not load the dataset {dataset_name or train_data_dir!r}: {error}. Check the name (and that you "
            "are online and logged in for private Hub datasets), or use --train_data_dir for a local image folder."
        ) from error
    if split not in dataset_dict:
        raise ValueError(
            f"The dataset has no split {split!r}; available splits: {sorted(dataset_dict)}. Pass one as --split."
        )
    dataset = dataset_dict[split]
    columns = dataset.column_names or list(dataset.features or {})
    if image_column not in columns:
        raise ValueError(
            f"The dataset has no column {image_column!r}; available columns: {columns}. Pass the image column as "
            "--image_column."
        )
    if resolution is not None:
        for example in dataset.take(NUM_EAGERLY_CHECKED_IMAGES):
            check_image_size(example[image_column], resolution)
    return dataset


class PixelValuesTransform:
    """Batch transform: the image column → `pixel_values` `(B, 3, resolution, resolution)` in `[-1, 1]`.

    Evaluation (`augment=False`) uses `SimVQImageProcessor`'s deterministic resize-shortest-edge + center crop.
    Training (`augment=True`) resizes the shortest edge, then takes a random crop and a random horizontal flip, as
    diffusers' training examples do, drawn from a generator seeded by (seed, epoch, example key). An example's crop
    thus does not depend on when the dataloader fetched it (accelerate fetches a batch ahead and checkpoints the RNG
    after that), so a resumed run crops exactly as an uninterrupted one. The key is the example's index in a
    map-style dataset (the same crops with any number of processes or workers) and its position in a stream.
    (Hand-written because torchvision's transforms are not available here.)
    """

    def __init__(self, resolution: int, image_column: str = "image", augment: bool = False, seed: int = 0):
        self.resolution = resolution
        self.image_column = image_column
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.image_processor = SimVQImageProcessor.from_image_size(resolution)

    def set_epoch(self, epoch: int) -> None:
        """New crops every epoch."""
        self.epoch = epoch

    def _random_crop_and_flip(self, image: PIL.Image.Image, index: int) -> PIL.Image.Image:
        rng = np.random.default_rng((self.seed, self.epoch, index))
        scale = self.resolution / min(image.size)
        if scale != 1:
            size = (max(self.resolution, round(image.width * scale)), max(self.resolution, round(image.height * scale)))
            image = image.resize(size, PIL.Image.Resampling.BICUBIC)
        left = int(rng.integers(image.width - self.resolution + 1))
        top = int(rng.integers(image.height - self.resolution + 1))
        image = image.crop((left, top, left + self.resolution, top + self.resolution))
        if rng.random() < 0.5:
            image = image.transpose(PIL.Image.Transpose.FLIP_LEFT_RIGHT)
        return image

    def __call__(self, batch: dict[str, list], indices: list[int] | None = None) -> dict[str, torch.Tensor]:
        images = [image.convert("RGB") for image in batch[self.image_column]]
        for image in images:
            check_image_size(image, self.resolution)
        if self.augment:
            if indices is None or len(indices) != len(images):
                raise ValueError("Augmentation draws each crop from the example's index: pass one index per image.")
            images = [self._random_crop_and_flip(image, index) for image, index in zip(images, indices, strict=True)]
        return {"pixel_values": self.image_processor(images, return_tensors="pt")["pixel_values"]}


class TransformedImageDataset(torch.utils.data.Dataset):
    """A map-style `datasets.Dataset` served through a `PixelValuesTransform` that also gets the examples' indices.

    `datasets.Dataset.with_transform` passes the transform no indices, and adding an index column would rewrite a
    shuffled or split dataset's images (`flatten_indices`); so this thin wrapper reads a whole batch with one
    `dataset[indices]` (`__getitems__`, which `DataLoader` uses for batched reads) and passes the indices along.
    """

    def __init__(self, dataset: datasets.Dataset, transform: PixelValuesTransform):
        self.dataset = dataset
        self.transform = transform

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitems__(self, indices: list[int]) -> list[dict[str, torch.Tensor]]:
        pixel_values = self.transform(self.dataset[indices], indices)["pixel_values"]
        return [{"pixel_values": values} for values in pixel_values]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.__getitems__([index])[0]

    def set_epoch(self, epoch: int) -> None:
        self.transform.set_epoch(epoch)


class StreamPositionKeys:
    """Calls a `PixelValuesTransform` from a stream's `map(with_indices=True)` with keys unique across workers.

    `datasets` counts the indices in each DataLoader worker separately (every worker starts at 0 on its own shards),
    so worker `w` of `n` turns its index `i` into `i·n + w`. The crops then depend on the number of workers, which a
    resumed run keeps.
    """

    def __init__(self, transform: PixelValuesTransform):
        self.transform = transform

    def __call__(self, batch: dict[str, list], indices: list[int]) -> dict[str, torch.Tensor]:
        worker = torch.utils.data.get_worker_info()
        if worker is not None:
            indices = [index * worker.num_workers + worker.id for index in indices]
        return self.transform(batch, indices)


def with_pixel_values(
    dataset: datasets.Dataset | datasets.IterableDataset,
    resolution: int,
    image_column: str = "image",
    augment: bool = False,
    seed: int = 0,
) -> TransformedImageDataset | datasets.IterableDataset:
    """`dataset` yielding `{"pixel_values": (3, resolution, resolution)}` examples, ready for a `DataLoader`.

    Both kinds have `set_epoch`; call it every epoch. A map-style dataset is transformed on access, so augmentation
    differs every epoch; a streaming one gets a lazy batched `map` keyed by stream position (a streaming run is one
    epoch long, and a resumed one replays the stream from its start).
    """
    transform = PixelValuesTransform(resolution, image_column, augment, seed)
    if isinstance(dataset, datasets.IterableDataset):
        columns = list(dataset.features or [image_column])
        return dataset.map(StreamPositionKeys(transform), batched=True, with_indices=True, remove_columns=columns)
    return TransformedImageDataset(dataset, transform)


def training_and_validation_data(
    resolution: int,
    num_train_images: int,
    num_validation_images: int,
    validation_split: str = "validation",
    random_crop: bool = False,
    seed: int = 0,
    shuffle_buffer_size: int = 10_000,
    **source,
) -> tuple[TransformedImageDataset | datasets.IterableDataset, TransformedImageDataset | datasets.IterableDataset]:
    """Train and validation sets yielding `pixel_values`: the embedded photos unless `source` names a dataset.

    `source` holds the keywords of `load_image_split` (`dataset_name`, `train_data_dir`, `image_column`,
    `streaming`, …). A dataset without `validation_split` gives up `num_validation_images` of its training images.
    """
    streaming = source.get("streaming", False)
    image_column = source.get("image_column", "image")
    train_dataset = load_image_split("train", resolution, num_train_images, **source)
    try:
        validation_dataset = load_image_split(validation_split, resolution, num_validation_images, **source)
    except ValueError:
        if streaming:
            validation_dataset = train_dataset.take(num_validation_images)
            train_dataset = train_dataset.skip(num_validation_images)
        else:
            held_out = train_dataset.train_test_split(test_size=num_validation_images, seed=0)
            train_dataset, validation_dataset = held_out["train"], held_out["test"]
        logger.warning(f"No {validation_split!r} split: validating on {num_validation_images} held-out images.")
    if streaming:
        train_dataset = train_dataset.shuffle(seed=seed, buffer_size=shuffle_buffer_size)
    return (
        with_pixel_values(train_dataset, resolution, image_column, random_crop, seed),
        with_pixel_values(validation_dataset, resolution, image_column, augment=False),
    )


def first_examples(
    dataset: torch.utils.data.Dataset | datasets.IterableDataset, num_examples: int
) -> torch.utils.data.Dataset | datasets.IterableDataset:
    """The first `num_examples` of a map-style dataset or a stream (all of them when there are fewer)."""
    if isinstance(dataset, datasets.IterableDataset):
        return dataset.take(num_examples)
    return torch.utils.data.Subset(dataset, range(min(num_examples, len(dataset))))


__all__ = [
    "PixelValuesTransform",
    "StreamPositionKeys",
    "TransformedImageDataset",
    "check_image_size",
    "default_image_datasets",
    "default_image_split",
    "first_examples",
    "load_image_dataset",
    "load_image_split",
    "training_and_validation_data",
    "with_pixel_values",
]
