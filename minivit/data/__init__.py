"""Data: CIFAR-10 loading (download, checks, safe extraction) and the input pipeline."""
from .cifar10 import (
    ARCHIVE_NAME,
    CIFAR10_MD5,
    ChecksumWarning,
    DatasetSizeWarning,
    CIFAR10_URL,
    FILE_MD5S,
    FOLDER,
    default_data_dir,
    download,
    file_md5,
    fingerprint,
    load_cifar10,
)
from .pipeline import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    Augment,
    Loader,
    mixup_cutmix,
    normalize,
    random_crop,
    random_hflip,
)
from .synthetic import make_synthetic_archive

__all__ = [
    "ARCHIVE_NAME", "CIFAR10_MD5", "CIFAR10_URL", "FILE_MD5S", "FOLDER",
    "ChecksumWarning", "DatasetSizeWarning",
    "default_data_dir", "download", "file_md5", "fingerprint", "load_cifar10", "make_synthetic_archive",
    "CIFAR10_MEAN", "CIFAR10_STD", "Augment", "Loader",
    "mixup_cutmix", "normalize", "random_crop", "random_hflip",
]
