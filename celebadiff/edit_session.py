"""The interactive editor's state, without its widgets: which face is edited, and the Editor editing it.

    session = EditSession(model, schedule, config, dataset)
    session.use_dataset_face(3)                       # or session.use_upload(bytes, "me.jpg")
    result = session.run({"Smiling": 2.0}, {"Smiling": "mouth"}, method="ddib", steps=25)

A slider's value is a signed strength (+ adds the attribute, - removes it) and its region says where it
may act: JOINT (one DiffEdit mask for every joint slider: a single change with per-attribute strengths),
"diffedit" (its own mask) or a named region (`celebadiff.regions`). The session's `Editor` keeps each
face's inversion, reconstruction and masks, so a moved slider runs only the generation.
`celebadiff.widgets.AttributeEditor` is the view over it.
"""

import io

import torch
from PIL import Image

from .changes import Change
from .data import is_celeba_frame, to_model_range
from .editing import Editor
from .photo import frame_faces, paste_faces, read_photo
from .regions import OWN_MASK, layout_of, region_changes
from .source_attributes import classifier_states
from .unet import UNKNOWN, attribute_states

JOINT = "joint"  # a slider's region: part of the joint edit, inside one DiffEdit mask


def read_upload(content, name, size, crop):
    """Bytes of an uploaded photo -> (Photo, its largest face as a FaceCrop), or ValueError saying what is wrong.

    An image of CelebA's aligned aspect is framed as the loader frames it; any other is searched for faces.
    """
    photo = read_photo(io.BytesIO(bytes(content)), name=name)
    crops, _ = frame_faces(photo.rgb, size, crop, name=name, aligned=is_celeba_frame(*photo.size))
    return photo, crops[0]


class EditSession:
    """The face being edited (a dataset image or an uploaded photo's face) and its edits.

    Args:
        model, schedule, config: the diffusion U-Net (eval mode), its NoiseSchedule and Config.
        dataset: a CelebADataset with `attribute_names == config.attributes` and `size == config.image_size`.
        classifier: optional AttributeClassifier; it labels uploads (their source states).
        steps: the initial DDIM steps, 10 to 100; precision: the Editor's ("fp32", "bf16", "auto").
    Attributes: x0 (1, 3, S, S) in [-1, 1] and y_source (1, A) of the face; label; layout (where named
    regions lie on it); photo and crop (an upload and its face, else None); after `run`, result (the
    FaceEdit), mask (where it acted, (1, 1, S, S), or None) and pasted (the whole photo edited, uploads only).
    """

    def __init__(self, model, schedule, config, dataset, classifier=None, steps=25, precision="fp32"):
        if list(dataset.attribute_names) != list(config.attributes) or dataset.size != config.image_size:
            raise ValueError(f"the dataset gives {dataset.size} px images with attributes {dataset.attribute_names}, "
                             f"the model wants {config.image_size} px and {list(config.attributes)}; build it as "
                             "CelebADataset(root, split, attributes=list(config.attributes), size=config.image_size)")
        if not 10 <= steps <= 100:
            raise ValueError(f"steps={steps}: the editor's steps slider runs from 10 to 100; pick a value there")
        if len(dataset) == 0:
            raise ValueError(f"the {dataset.split} split of {dataset.root} is empty; choose another split")
        self.config, self.dataset, self.classifier = config, dataset, classifier
        self.names = list(config.attributes)
        self.editor = Editor(model, schedule, steps, precision, attribute_names=self.names)
        self.x0 = self.y_source = self.label = self.photo = self.crop = None
        self.layout = "celeba"
        self.result = self.mask = self.pasted = None

    def use_dataset_face(self, index):
        """Edit the dataset's image `index` (its labels are its source states)."""
        image, labels = self.dataset[index]
        with Image.open(self.dataset.paths[index]) as im:  # the header only: its size
            layout = layout_of(im.height, im.width)
        self._use(image[None], attribute_states(labels[None]), f"{self.dataset.split} image #{index}", layout)

    def use_upload(self, content, name):
        """Edit the largest face of an uploaded photo (bytes); its source states are the classifier's reading
        (UNKNOWN without one). ValueError (nothing changes) for an unreadable photo or one without a face."""
        photo, crop = read_upload(content, name, self.config.image_size, self.config.crop)
        image = to_model_range(crop.x0)[None]
        states = torch.full((1, len(self.names)), UNKNOWN, dtype=torch.long)
        if self.classifier is not None:
            states = classifier_states(self.classifier, image, self.names, states)
        # a detected face is aligned to CelebA's template; an undetected one is framed as it is
        self._use(image, states, f"upload {name}", "celeba" if crop.score is not None else layout_of(*photo.size))
        self.photo, self.crop = photo, crop

    def _use(self, image, states, label, layout):
        self.x0, self.y_source, self.label, self.layout = image, states, label, layout
        self.photo = self.crop = self.result = self.mask = self.pasted = None

    def changes(self, strengths, regions):
        """The edit's changes: {name: signed strength} and {name: JOINT | OWN_MASK | a REGIONS name}.

        Every moved slider joint: one Change with per-attribute strengths, in one DiffEdit mask. Else each
        moved slider is its own change (attribute, 1 to add or 0 to remove, |strength|, its region), a joint
        one in its own DiffEdit mask.
        """
        moved = [(n, s) for n, s in strengths.items() if s]
        if all(regions.get(n, JOINT) == JOINT for n, _ in moved):
            return [Change(attribute_strength=torch.tensor([[float(strengths.get(n, 0.0)) for n in self.names]]))]
        specs = [(n, int(s > 0), abs(s), OWN_MASK if regions.get(n, JOINT) == JOINT else regions[n]) for n, s in moved]
        return region_changes(specs, self.config.image_size, self.config.crop, [self.layout])

    def run(self, strengths, regions=None, method="ddib", steps=None, seed=0, callback=None):
        """Edit the face: `changes(strengths, regions)` by `method`, with `steps` DDIM steps (default: as
        before) and SDEdit's `seed`. Returns the FaceEdit (also kept in `result`); for an upload, `pasted`
        is the photo with the edit pasted back."""
        changes = self.changes(strengths, regions or {})
        if method != "ddib" and not isinstance(changes[0], Change):
            raise ValueError("regions are DDIB's: choose the DDIB method, or set every moved slider's region to joint")
        device = next(self.editor.model.parameters()).device
        self.editor.steps, self.editor.seed = steps or self.editor.steps, seed
        x0, y_source, photo, crop = self.x0, self.y_source, self.photo, self.crop  # the face may change meanwhile
        result = self.editor.edit(x0.to(device), y_source.to(device), changes, method, reconstruct=photo is not None,
                                  callback=callback).select(slice(0, 1))
        self.result, self.mask = result, result.mask
        self.pasted = paste_faces(photo, [crop], result) if photo is not None else None
        return result
