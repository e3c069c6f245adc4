"""Zero-shot CLIP with CoOp's hand-written prompts (``trainers/zsclip.py``).

``template`` (a string with ``{}``), or ``dataset`` (CoOp's per-dataset template), or ``ensemble``:
"select" = CoOp's ZeroshotCLIP2 (the 7 selected ImageNet templates, plus the dataset's template when the
dataset is not ImageNet), "full" = the 80 ImageNet templates of OpenAI's notebook (same rule). Ensembles
average the normalised text features of each template and normalise again.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .base import PromptModel
from .text import clean_classnames, tokenize

CUSTOM_TEMPLATES = {
    "OxfordPets": "a photo of a {}, a type of pet.",
    "OxfordFlowers": "a photo of a {}, a type of flower.",
    "FGVCAircraft": "a photo of a {}, a type of aircraft.",
    "DescribableTextures": "{} texture.",
    "EuroSAT": "a centered satellite photo of {}.",
    "StanfordCars": "a photo of a {}.",
    "Food101": "a photo of {}, a type of food.",
    "SUN397": "a photo of a {}.",
    "Caltech101": "a photo of a {}.",
    "UCF101": "a photo of a person doing {}.",
    "ImageNet": "a photo of a {}.",
    "ImageNetSketch": "a photo of a {}.",
    "ImageNetV2": "a photo of a {}.",
    "ImageNetA": "a photo of a {}.",
    "ImageNetR": "a photo of a {}.",
    # the demo world's datasets (quantprompt.world.WORLD_DATASETS holds the same templates; a test checks it)
    "WorldShapes": "a photo of a {}.",
    "WorldPatterns": "a photo of a {}.",
    "WorldObjects": "a photo of a {}.",
    "WorldSketches": "a sketch of a {}.",
    "WorldPaintings": "a painting of a {}.",
}

# OpenAI CLIP's "Prompt_Engineering_for_ImageNet" notebook, in its order (CoOp's imagenet_templates.py)
IMAGENET_TEMPLATES = [
    "a bad photo of a {}.", "a photo of many {}.", "a sculpture of a {}.", "a photo of the hard to see {}.",
    "a low resolution photo of the {}.", "a rendering of a {}.", "graffiti of a {}.", "a bad photo of the {}.",
    "a cropped photo of the {}.", "a tattoo of a {}.", "the embroidered {}.", "a photo of a hard to see {}.",
    "a bright photo of a {}.", "a photo of a clean {}.", "a photo of a dirty {}.", "a dark photo of the {}.",
    "a drawing of a {}.", "a photo of my {}.", "the plastic {}.", "a photo of the cool {}.",
    "a close-up photo of a {}.", "a black and white photo of the {}.", "a painting of the {}.",
    "a painting of a {}.", "a pixelated photo of the {}.", "a sculpture of the {}.", "a bright photo of the {}.",
    "a cropped photo of a {}.", "a plastic {}.", "a photo of the dirty {}.", "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.", "a photo of the {}.", "a good photo of the {}.", "a rendering of the {}.",
    "a {} in a video game.", "a photo of one {}.", "a doodle of a {}.", "a close-up photo of the {}.",
    "a photo of a {}.", "the origami {}.", "the {} in a video game.", "a sketch of a {}.", "a doodle of the {}.",
    "a origami {}.", "a low resolution photo of a {}.", "the toy {}.", "a rendition of the {}.",
    "a photo of the clean {}.", "a photo of a large {}.", "a rendition of a {}.", "a photo of a nice {}.",
    "a photo of a weird {}.", "a blurry photo of a {}.", "a cartoon {}.", "art of a {}.", "a sketch of the {}.",
    "a embroidered {}.", "a pixelated photo of a {}.", "itap of the {}.", "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.", "a plushie {}.", "a photo of the nice {}.", "a photo of the small {}.",
    "a photo of the weird {}.", "the cartoon {}.", "art of the {}.", "a drawing of the {}.",
    "a photo of the large {}.", "a black and white photo of a {}.", "the plushie {}.", "a dark photo of a {}.",
    "itap of a {}.", "graffiti of the {}.", "a toy {}.", "itap of my {}.", "a photo of a cool {}.",
    "a photo of a small {}.", "a tattoo of the {}.",
]

IMAGENET_TEMPLATES_SELECT = [
    "itap of a {}.", "a bad photo of the {}.", "a origami {}.", "a photo of the large {}.",
    "a {} in a video game.", "art of the {}.", "a photo of the small {}.",
]

ENSEMBLES = {"select": IMAGENET_TEMPLATES_SELECT, "full": IMAGENET_TEMPLATES}
DEFAULT_TEMPLATE = "a photo of a {}."


def resolve_templates(template: str | None = None, dataset: str | None = None, ensemble: str | None = None) -> list[str]:
    """The list of templates zero-shot CLIP uses for these options (see module docstring)."""
    if dataset is not None and dataset not in CUSTOM_TEMPLATES:
        raise ValueError(f"dataset={dataset!r} has no CoOp template; known: {', '.join(sorted(CUSTOM_TEMPLATES))}")
    if template is not None and (not isinstance(template, str) or "{}" not in template):
        raise ValueError(f"template={template!r} must be a string containing '{{}}' for the class name")
    if ensemble is not None:
        if ensemble not in ENSEMBLES:
            raise ValueError(f"ensemble={ensemble!r} is not one of {', '.join(ENSEMBLES)} (or None)")
        if template is not None:
            raise ValueError("pass either template or ensemble, not both")
        templates = list(ENSEMBLES[ensemble])
        if dataset is not None and dataset != "ImageNet":
            templates.append(CUSTOM_TEMPLATES[dataset])
        return templates
    if template is not None:
        return [template]
    return [CUSTOM_TEMPLATES[dataset] if dataset is not None else DEFAULT_TEMPLATE]


class ZeroShotPromptLearner(nn.Module):
    """Holds only the tokenised prompts (fixed, not saved): zero-shot CLIP learns nothing."""

    def __init__(self, classnames: Sequence[str], templates: Sequence[str]) -> None:
        super().__init__()
        self.classnames = clean_classnames(classnames)
        self.templates = list(templates)
        tokens = torch.stack([tokenize([t.format(c) for c in self.classnames]) for t in self.templates])
        self.register_buffer("tokenized_prompts", tokens, persistent=False)  # (n_templates, n_cls, 77)
        self.n_cls = len(self.classnames)


class ZeroShotCLIP(PromptModel):
    name = "zsclip"

    def __init__(
        self,
        clip_model: nn.Module,
        classnames: Sequence[str],
        template: str | None = None,
        dataset: str | None = None,
        ensemble: str | None = None,
        precision: str = "fp16",
    ) -> None:
        templates = resolve_templates(template, dataset, ensemble)
        super().__init__(clip_model, precision)
        self.prompt_learner = ZeroShotPromptLearner(classnames, templates)
        self.freeze_clip()
        for p in self.parameters():
            p.requires_grad_(False)

    def _text_dependencies(self):
        yield from super()._text_dependencies()
        yield self.clip_model.token_embedding.weight

    def _text_features(self) -> torch.Tensor:
        """CLIP's ``encode_text`` of each template's prompts, through the shared (truncating) text encoder."""
        tokens = self.prompt_learner.tokenized_prompts
        if tokens.shape[0] == 1:
            return self.text_encoder.encode_tokens(tokens[0])
        mean = 0
        for t in tokens:
            f = self.text_encoder.encode_tokens(t)
            mean = mean + f / f.norm(dim=-1, keepdim=True)
        return mean / tokens.shape[0]  # normalised again by the caller
