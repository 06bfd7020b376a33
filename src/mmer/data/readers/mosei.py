"""CMU-MOSEI: `mosei-aligned` (the processed `train_valid_test.pt` of TAILOR/CARAT/RAMer, in the label-sequence
layout of `label_sequences.py`: text [N, L, 300], visual [N, L, 35], audio [N, L, 74]) and `mosei-unaligned`
(MulT's `mosei_senti_data_noalign.pkl`, labels joined by index from the `.pt`). Layouts and choices:
docs/datasets.md. Arrays become float32 as they are read (the file stores float64), so peak memory stays near the
float32 size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mmer.data.dataset import SPLITS, DatasetBundle, spec_from_splits
from mmer.data.readers.label_sequences import (
    MODALITIES,
    MaskMode,
    field,
    label_names_from_vocab,
    label_sequence_bundle,
    labels_from_targets,
    make_split,
    ones_mask,
    padding_mask,
    replace_neg_inf,
    sample_ids,
    split_dict,
    stack_float32,
)
from mmer.data.safe_load import float32_arrays, load_data_file, require_file, skip_float_arrays
from mmer.errors import DataError
from mmer.registry import DATASETS

MOSEI_LABELS = ("happy", "sad", "anger", "surprise", "disgust", "fear")  # documented order of ids 4..9
ALIGNED_FIELDS = {"text": "src-text", "visual": "src-visual", "audio": "src-audio"}
UNALIGNED_FIELDS = {"text": "text", "visual": "vision", "audio": "audio"}


@dataclass
class MoseiAlignedOptions:
    file: str = "train_valid_test.pt"  # under --root
    masks: MaskMode = "real"  # real: zero-padded time steps are masked out; ones: every step is real (official)


@dataclass
class MoseiUnalignedOptions:
    file: str = "mosei_senti_data_noalign.pkl"  # MulT's pickle, under --root
    labels_file: str = "train_valid_test.pt"  # the aligned .pt: labels are taken from it by sample index
    masks: MaskMode = "real"


@DATASETS.register("mosei-aligned", options=MoseiAlignedOptions, summary="CMU-MOSEI word-aligned (processed .pt), 6 emotions", needs_root=True)
def load_mosei_aligned(root: Path | None, options: MoseiAlignedOptions | None) -> DatasetBundle:
    options = options or MoseiAlignedOptions()
    path = require_file(root, options.file, "mosei-aligned", f"{options.file} (the processed word-aligned CMU-MOSEI file)")
    data = load_data_file(path, float32_arrays)
    return label_sequence_bundle(data, str(path), "mosei-aligned", MOSEI_LABELS, ALIGNED_FIELDS, options.masks, owned=True)


@DATASETS.register("mosei-unaligned", options=MoseiUnalignedOptions, summary="CMU-MOSEI unaligned (MulT pickle + labels from the .pt)", needs_root=True)
def load_mosei_unaligned(root: Path | None, options: MoseiUnalignedOptions | None) -> DatasetBundle:
    options = options or MoseiUnalignedOptions()
    holds = f"{options.file} (MulT's unaligned CMU-MOSEI pickle) and {options.labels_file} (the aligned .pt, for the labels)"
    feature_path = require_file(root, options.file, "mosei-unaligned", holds)
    label_path = require_file(root, options.labels_file, "mosei-unaligned", holds)
    label_data = load_data_file(label_path, skip_float_arrays)  # only 'tgt' and 'dict' are needed
    data = load_data_file(feature_path, float32_arrays)
    splits = {}
    for split in SPLITS:
        targets = field(split_dict(label_data, label_path, split), "tgt", label_path, split)
        labels = labels_from_targets(targets, len(MOSEI_LABELS), label_path, split)
        part = split_dict(data, feature_path, split)
        features = {}
        for modality, key in UNALIGNED_FIELDS.items():
            features[modality] = stack_float32(field(part, key, feature_path, split), feature_path, split, key, copy=False)
            if len(features[modality]) != len(labels):
                raise DataError(
                    f"{feature_path}: split '{split}', field '{key}' has {len(features[modality])} samples but "
                    f"{label_path} has {len(labels)} labels for that split; labels are joined by sample index, so "
                    "both files must hold the same samples in the same order"
                )
        masks = {m: ones_mask(x) if options.masks == "ones" else padding_mask([x]) for m, x in features.items()}
        replace_neg_inf(features["audio"])
        splits[split] = make_split(features, masks, labels, sample_ids(part, len(labels), split))
    names = label_names_from_vocab(label_data, len(MOSEI_LABELS), MOSEI_LABELS)
    source = f"{feature_path} + labels from {label_path}"
    return DatasetBundle(spec_from_splits("mosei-unaligned", names, splits, MODALITIES), splits, source)
