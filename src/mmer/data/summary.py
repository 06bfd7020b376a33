"""A human-readable summary of a loaded dataset (`mmer data check`, `mmer data synth`)."""

from __future__ import annotations

from mmer.data.dataset import DatasetBundle


def summarize(bundle: DatasetBundle) -> str:
    """What `mmer data check` and `mmer data synth` print: labels, shapes and presence per split, label rates, and
    the dataset's reference points."""
    spec = bundle.spec
    lines = [f"dataset {spec.name} ({bundle.source})"]
    lines.append(f"labels ({spec.num_labels}): {', '.join(spec.label_names)}")
    if spec.multi_party:
        lines.append(
            f"multi-party: up to {spec.max_persons} persons x {spec.max_segments} segments per clip; "
            f"personality dim {spec.personality_dim}"
        )
    lines.append("")
    where = "target token" if spec.multi_party else "sample"
    lines.append(f"modality shapes are [clips, tokens, dim]; (present) = share of samples whose {where} has the modality")
    lines.append("| split | samples | clips | " + " | ".join(f"{m} (present)" for m in spec.modality_names) + " |")
    lines.append("|---|---:|---:|" + "---|" * len(spec.modalities))
    for name, split in bundle.splits.items():
        cells = []
        rows = split.clip_index
        for m in spec.modality_names:
            mask = split.masks[m][rows]  # [N, L]
            if split.target is not None:
                mask = mask & split.target
            present = mask.any(dim=1).float().mean().item()
            cells.append(f"{list(split.features[m].shape)} ({present:.0%})")
        lines.append(f"| {name} | {len(split)} | {split.num_clips} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("positive rate per label:")
    lines.append("| split | " + " | ".join(spec.label_names) + " | labels/sample | empty |")
    lines.append("|---|" + "---:|" * (spec.num_labels + 2))
    for name, split in bundle.splits.items():
        rates = split.labels.mean(dim=0).tolist()
        per_sample = split.labels.sum(dim=1)
        lines.append(
            f"| {name} | " + " | ".join(f"{r:.3f}" for r in rates)
            + f" | {per_sample.mean().item():.2f} | {(per_sample == 0).float().mean().item():.1%} |"
        )
    if bundle.reference:
        lines.append("")
        lines.append("reference points (test split):")
        for ref, metrics in bundle.reference.items():
            if isinstance(metrics, dict):
                shown = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items() if isinstance(v, (int, float)))
                lines.append(f"  {ref}: {shown}")
    return "\n".join(lines)
