"""An interactive attribute editor for Jupyter (ipywidgets): pick a face or upload a photo, move signed sliders,
press Edit.

    source face (test image by index or thumbnail, or an uploaded photo: its largest face, found and aligned)
        + one slider per attribute, -3 "remove" .. 0 "keep" .. +3 "add"
        + beside each slider, where it may act: "joint" (one DiffEdit mask for every joint slider), its own
          DiffEdit mask, or a named region (mouth, eyes, hair, face, all; `celebadiff.regions`)
        --> celebadiff.photo.edit_faces(..., attribute_strength=slider values)   (in a background thread)
            or, when a moved slider names a region, celebadiff.regions.region_edit_faces (each moved slider
            its own change, strength and region; a "joint" one then gets its own DiffEdit mask)
        --> source | edited | |edited - source| heat map, and the classifier's reading of the result
        --> for a photo: the photo before (with the face's box) and after (the edit pasted back)

The widget only wires controls to `photo.edit_faces` (which is `editing.edit` keeping each face's DDIM
inversion), so the notebook, the CLI and this editor give the same result for the same settings; moving
a slider and pressing Edit again reuses the face's inversion and reconstruction.

    editor = AttributeEditor.from_checkpoint("checkpoints")
    editor            # the last expression of a cell displays it
"""

import html
import io
import threading
import time
import traceback

import ipywidgets as widgets
import matplotlib
import numpy as np
import torch
from PIL import Image

from .data import CelebADataset, to_model_range, to_uint8
from .diffusion import NoiseSchedule
from .models import load_model
from .photo import InversionCache, draw_boxes, edit_faces, frame_faces, is_celeba_frame, paste_faces, read_photo
from .regions import OWN_MASK, REGIONS, layout_of, named_region, region_edit_faces
from .synthfaces import builtin_dataset
from .unet import UNKNOWN, attribute_states

SCALE = 4  # displayed images are upscaled this many times (nearest neighbour), so 32 px faces are visible
DIFF_GAIN = 4  # |edited - source| is amplified this much in the difference image
THUMBNAILS = 8  # faces in the thumbnail strip
STRENGTH = 3.0  # slider range: -STRENGTH (remove) .. +STRENGTH (add)
PHOTO_SIDE = 320  # an uploaded photo is shown at most this large
JOINT = "joint"  # a slider's region: part of the joint edit, inside one DiffEdit mask
REGION_OPTIONS = [("joint", JOINT), ("own mask", OWN_MASK), *((r, r) for r in REGIONS)]


def png(image, scale=SCALE, fit=None):
    """(3, H, W) uint8 or (H, W, 3) uint8 array -> PNG bytes, upscaled `scale` times (nearest), or with
    `fit` resized (antialiased) so that its longer side is `fit` pixels."""
    array = image.permute(1, 2, 0).cpu().numpy() if torch.is_tensor(image) else np.asarray(image)
    picture = Image.fromarray(array)
    if fit:
        k = fit / max(picture.size)
        picture = picture.resize((max(1, round(picture.width * k)), max(1, round(picture.height * k))), Image.LANCZOS)
    else:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def difference_heat(source, edited, gain=DIFF_GAIN):
    """Heat image of |edited - source|: source, edited (3, H, W) in [-1, 1] -> (H, W, 3) uint8 (inferno).

    The mean absolute change over channels, in [0, 1] of the image range, times `gain`, clipped.
    """
    change = (edited.float() - source.float()).abs().mean(0).div(2).mul(gain).clamp(0, 1)
    return (matplotlib.colormaps["inferno"](change.cpu().numpy())[..., :3] * 255).astype(np.uint8)


def read_upload(content, name, size, crop):
    """Bytes of an uploaded photo -> (Photo, its largest face as a FaceCrop), or ValueError saying what is wrong.

    An image of CelebA's aligned aspect is framed as the loader frames it; any other is searched for faces.
    """
    photo = read_photo(io.BytesIO(bytes(content)), name=name)
    crops, _ = frame_faces(photo.rgb, size, crop, name=name, aligned=is_celeba_frame(*photo.size))
    return photo, crops[0]


class AttributeEditor:
    """Edit faces with signed attribute sliders; display the editor as a cell's last expression.

    Args:
        model: the diffusion U-Net (eval mode); its device is used for the edit.
        schedule: its NoiseSchedule.
        config: its Config (attributes, image_size, crop).
        dataset: a CelebADataset with `attribute_names == config.attributes` and `size == config.image_size`.
        classifier: optional AttributeClassifier (celebadiff.classifier); reads the result and labels uploads.
        steps: the initial DDIM steps (25: a few seconds per edit for the 32 px demo model on a CPU).

    For tests and scripts: `run_edit()` edits synchronously with the current settings and returns the
    (1, 3, H, W) result; `busy`, `status` (HTML), `result`, `sliders` {name: FloatSlider}, `regions`
    {name: Dropdown of REGION_OPTIONS}, `mask` (where the last edit acted, (1, 1, S, S) or None), `edit_button`;
    after an edit of an uploaded photo, `pasted` is the whole photo edited (a `photo.Photo`).
    """

    def __init__(self, model, schedule, config, dataset, classifier=None, steps=25):
        if list(dataset.attribute_names) != list(config.attributes) or dataset.size != config.image_size:
            raise ValueError(f"the dataset gives {dataset.size} px images with attributes {dataset.attribute_names}, "
                             f"the model wants {config.image_size} px and {list(config.attributes)}; build it as "
                             "CelebADataset(root, split, attributes=list(config.attributes), size=config.image_size)")
        if not 10 <= steps <= 100:
            raise ValueError(f"steps={steps}: the editor's steps slider runs from 10 to 100; pick a value there")
        if len(dataset) == 0:
            raise ValueError(f"the {dataset.split} split of {dataset.root} is empty; choose another split")
        self.model, self.schedule, self.config = model, schedule, config
        self.dataset, self.classifier = dataset, classifier
        self.names = list(config.attributes)
        self.result = None
        self._lock, self._thread = threading.Lock(), None
        self._source = self._source_states = None
        self._layout = "celeba"  # where named regions lie on the current face (`regions.layout_of`)
        self.mask = None
        self._uploaded = False
        self._photo = self._crop = self.pasted = None  # an uploaded photo, its face, the photo edited
        self._cache = InversionCache()
        self._build(steps)
        self._show_dataset_face()

    @classmethod
    def from_model(cls, model, config, data=None, split="test", classifier=None, **kwargs):
        """An editor for a model and a CelebA-layout folder (None: the built-in faces, `builtin_dataset()`)."""
        data = builtin_dataset() if data is None else data
        dataset = CelebADataset(data, split, attributes=list(config.attributes), size=config.image_size,
                                crop=config.crop)
        if isinstance(classifier, str) or hasattr(classifier, "is_dir"):  # a path: load it
            from .classifier import load_classifier  # only needed when a classifier is used
            classifier = load_classifier(classifier)
        return cls(model, NoiseSchedule.named(config.schedule, config.T), config, dataset, classifier, **kwargs)

    @classmethod
    def from_checkpoint(cls, checkpoint="checkpoints", data=None, split="test", classifier=None, **kwargs):
        """An editor for a saved model (`train.load_model`); `classifier` may be a loaded one or its folder."""
        model, config, _ = load_model(checkpoint)
        return cls.from_model(model, config, data, split, classifier, **kwargs)

    # --- layout ---------------------------------------------------------------------------------

    def _build(self, steps):
        wide = {"description_width": "150px"}
        self.index = widgets.IntSlider(0, min=0, max=len(self.dataset) - 1, description=f"{self.dataset.split} image",
                                       style=wide, continuous_update=False)
        self.upload = widgets.FileUpload(accept="image/*", multiple=False, description="Upload a photo")
        self.thumbnails = [widgets.Image(format="png", width=48, height=48) for _ in range(THUMBNAILS)]
        self.picks = [widgets.Button(layout=widgets.Layout(width="56px")) for _ in range(THUMBNAILS)]
        self.page_buttons = [widgets.Button(description=s, layout=widgets.Layout(width="36px")) for s in "<>"]
        self.sliders = {name: widgets.FloatSlider(0.0, min=-STRENGTH, max=STRENGTH, step=0.25, description=name,
                                                  readout_format="+.2f", style=wide, continuous_update=False)
                        for name in self.names}
        narrow = widgets.Layout(width="105px")
        self.regions = {name: widgets.Dropdown(options=REGION_OPTIONS, value=JOINT, layout=narrow)
                        for name in self.names}
        self.method = widgets.ToggleButtons(options=[("DDIB", "ddib"), ("SDEdit", "sdedit")], description="method")
        self.steps = widgets.IntSlider(steps, min=10, max=100, description="DDIM steps", continuous_update=False)
        self.seed = widgets.IntText(0, description="seed (SDEdit)", style=wide, layout=widgets.Layout(width="230px"))
        self.edit_button = widgets.Button(description="Edit", button_style="primary", icon="magic")
        self.reset_button = widgets.Button(description="Reset sliders")
        self.progress = widgets.IntProgress(0, min=0, max=1, description="progress")
        self.status = widgets.HTML("")
        self.source_info = widgets.HTML("")
        side = str(self.config.image_size * SCALE)  # fixed, so a wide caption does not stretch its image
        self.images = {k: widgets.Image(format="png", width=side, height=side)
                       for k in ("source", "edited", "difference")}
        for key, image in self.images.items():
            image.add_class(f"celebadiff-{key}")  # a handle for the browser test
        self.reading = widgets.HTML("")
        self.photos = {k: widgets.Image(format="png") for k in ("photo", "photo_edited")}
        for key, image in self.photos.items():
            image.add_class(f"celebadiff-{key}")
        self.photo_row = widgets.HBox([widgets.VBox([widgets.HTML(f"<center>{caption}</center>"), self.photos[k]])
                                       for k, caption in (("photo", "your photo (the face found)"),
                                                          ("photo_edited", "edited, pasted back"))])
        self.photo_row.layout.display = "none"

        self.index.observe(lambda _: self._show_dataset_face(), names="value")
        self.upload.observe(self._on_upload, names="value")
        for offset, pick in enumerate(self.picks):
            pick.on_click(lambda _, k=offset: self._pick(k))
        self.page_buttons[0].on_click(lambda _: self._turn_page(-1))
        self.page_buttons[1].on_click(lambda _: self._turn_page(+1))
        self.edit_button.on_click(self._on_edit_click)
        self.reset_button.on_click(lambda _: self.reset_sliders())

        strip = widgets.HBox([self.page_buttons[0],
                              *[widgets.VBox([t, p]) for t, p in zip(self.thumbnails, self.picks)],
                              self.page_buttons[1]])
        hint = widgets.HTML("<b>Attributes</b>: &minus; removes, 0 keeps, + adds (1: exactly the target, "
                            "more: stronger, as classifier-free guidance). Beside each, <b>where</b> it may act: "
                            "<i>joint</i> (one mask the model finds for all joint sliders), its <i>own mask</i>, or "
                            "a region of the face")
        rows = [widgets.HBox([self.sliders[n], self.regions[n]]) for n in self.names]
        columns = [widgets.VBox(rows[i::2]) for i in (0, 1)]
        captions = {"source": "source", "edited": "edited", "difference": f"|edited &minus; source| &times;{DIFF_GAIN}"}
        results = widgets.HBox([widgets.VBox([widgets.HTML(f"<center>{captions[k]}</center>"), im])
                                for k, im in self.images.items()] + [self.reading])
        self.widget = widgets.VBox([
            widgets.HTML("<b>Source face</b>: a test image (slider or thumbnail), or upload a photo with a face"),
            widgets.HBox([self.index, self.upload]), strip, self.source_info,
            hint, widgets.HBox(columns),
            widgets.HBox([self.method, self.steps]), widgets.HBox([self.seed, self.reset_button]),
            widgets.HBox([self.edit_button, self.progress]), self.status, results, self.photo_row])
        self._turn_page(0)

    def reset_sliders(self):
        """Every attribute slider back to 0 (keep), and every region back to joint."""
        for slider in self.sliders.values():
            slider.value = 0.0
        for region in self.regions.values():
            region.value = JOINT

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.widget._repr_mimebundle_(**kwargs) or {}
        # what a static page (GitHub, nbviewer) shows instead of the widget's long repr
        bundle["text/plain"] = "AttributeEditor: run this notebook in Jupyter to use the interactive editor"
        return bundle

    # --- choosing the source ----------------------------------------------------------------------

    def _turn_page(self, direction):
        page = self.index.value // THUMBNAILS + direction
        first = min(max(page, 0), (len(self.dataset) - 1) // THUMBNAILS) * THUMBNAILS
        for offset, (thumb, pick) in enumerate(zip(self.thumbnails, self.picks)):
            i = first + offset
            pick.disabled = i >= len(self.dataset)
            pick.description = f"#{i}" if i < len(self.dataset) else ""
            thumb.value = png(self.dataset.image_uint8(i), scale=1) if i < len(self.dataset) else b""
        self._first = first
        self._mark_pick()

    def _mark_pick(self):
        for offset, pick in enumerate(self.picks):
            pick.button_style = "info" if self._first + offset == self.index.value and not self._uploaded else ""

    def _pick(self, offset):
        self.index.value = self._first + offset
        self._show_dataset_face()  # also when the index did not change (coming back from an upload)

    def _show_dataset_face(self):
        image, labels = self.dataset[self.index.value]
        self._uploaded = False
        self._photo = self._crop = None
        self.photo_row.layout.display = "none"
        with Image.open(self.dataset.paths[self.index.value]) as im:  # the header only: its size
            self._layout = layout_of(im.height, im.width)
        self._set_source(image[None], attribute_states(labels[None]), f"{self.dataset.split} image #{self.index.value}")
        if not self._first <= self.index.value < self._first + THUMBNAILS:
            self._turn_page(0)
        self._mark_pick()

    def _on_upload(self, change):
        files = change["new"]
        if not files:
            return
        upload = files[0]
        name = upload.get("name", "upload")
        try:
            photo, crop = read_upload(upload["content"], name, self.config.image_size, self.config.crop)
        except ValueError as err:
            self._say(str(err), error=True)
            return
        self._uploaded = True
        self._layout = "celeba" if crop.score is not None else layout_of(*photo.size)
        image = to_model_range(crop.x0)[None]
        self._set_source(image, self._read_states(image), f"upload {name}")
        self._photo, self._crop = photo, crop
        boxed = draw_boxes(photo.rgb, [crop.box]) if crop.score is not None else photo.rgb
        self.photos["photo"].value = png(boxed, fit=PHOTO_SIDE)
        self.photos["photo_edited"].value = b""
        self.photo_row.layout.display = None
        self._mark_pick()

    def _read_states(self, image):
        """Source states of an upload: the classifier's reading (> 0.5) where it knows the name, else UNKNOWN."""
        states = torch.full((1, len(self.names)), UNKNOWN, dtype=torch.long)
        if self.classifier is not None:
            probs = self._predict(image)
            for a, name in enumerate(self.names):
                if name in probs:
                    states[0, a] = int(probs[name][0] > 0.5)
        return states

    def _set_source(self, image, states, label):
        self._source, self._source_states = image, states
        self.images["source"].value = png(to_uint8(image[0]))
        self.images["edited"].value = self.images["difference"].value = b""
        self.reading.value, self.result, self.pasted, self.mask = "", None, None, None
        present = [n for n, s in zip(self.names, states[0].tolist()) if s == 1]
        unknown = sum(s == UNKNOWN for s in states[0].tolist())
        text = f"<b>{html.escape(label)}</b> shows: {', '.join(present) or 'none of the attributes'}"
        self.source_info.value = text + (f" ({unknown} unknown)" if unknown else "")
        self._say("ready: move sliders, then press Edit")

    # --- editing ----------------------------------------------------------------------------------

    @property
    def busy(self):
        """True while an edit runs."""
        return self._lock.locked()

    def _on_edit_click(self, _button=None):
        if not self._lock.acquire(blocking=False):
            self._say("an edit is already running; wait for it to finish")
            return
        self.edit_button.disabled = True
        self._thread = threading.Thread(target=self._edit_and_release, daemon=True)
        self._thread.start()

    def wait(self, timeout=None):
        """Block until the edit started by the button (if any) has finished."""
        if self._thread is not None:
            self._thread.join(timeout)

    def run_edit(self):
        """Edit synchronously with the current settings; returns the (1, 3, H, W) result, or None on error."""
        if not self._lock.acquire(blocking=False):
            self._say("an edit is already running; wait for it to finish")
            return None
        self.edit_button.disabled = True
        return self._edit_and_release()

    def _edit_and_release(self):
        try:
            return self._edit()
        except Exception as err:  # shown in the status line: a widget callback has nowhere to raise to
            self._say(f"edit failed: {type(err).__name__}: {err}", error=True, detail=traceback.format_exc())
            return None
        finally:
            self.edit_button.disabled = False
            self._lock.release()

    def _edit(self):
        source, states = self._source, self._source_states  # the face may change while this runs
        photo, crop = self._photo, self._crop
        strengths = torch.tensor([[self.sliders[n].value for n in self.names]])
        device = next(self.model.parameters()).device
        self.progress.value = 0
        self._say(f"editing with {self.method.label}, {self.steps.value} steps ...")
        start = time.perf_counter()
        changes = self._region_changes(strengths[0], device)
        if changes:
            if self.method.value != "ddib":
                raise ValueError("regions are DDIB's: choose the DDIB method, or set every moved slider's region "
                                 "to joint")
            result = region_edit_faces(self.model, self.schedule, source.to(device), states.to(device), changes,
                                       self.names, steps=self.steps.value, seed=self.seed.value,
                                       reconstruct=photo is not None, callback=self._progress)
        else:
            result = edit_faces(self.model, self.schedule, source.to(device), states.to(device),
                                method=self.method.value, attribute_strength=strengths.to(device),
                                steps=self.steps.value, seed=self.seed.value, reconstruct=photo is not None,
                                cache=self._cache, callback=self._progress)
        edited = result.edited.cpu()
        self.result, self.mask = edited, None if result.mask is None else result.mask.cpu()
        shown = edited.clamp(-1, 1)  # strong edits overshoot [-1, 1]; show and judge the image as displayed
        self.images["edited"].value = png(to_uint8(shown[0]))
        self.images["difference"].value = png(difference_heat(source[0], shown[0]))
        self.reading.value = self._reading_table(source, shown, strengths[0])
        if photo is not None:
            self.pasted = paste_faces(photo, [crop], result.select(slice(0, 1)))
            self.photos["photo_edited"].value = png(self.pasted.rgb, fit=PHOTO_SIDE)
        moved = ", ".join(f"{n} {s:+.2f}" + (f" in {self.regions[n].label}" if changes else "")
                          for n, s in zip(self.names, strengths[0].tolist()) if s) or \
            "no slider moved: this is the DDIM reconstruction"
        reused = "; the face's inversion reused" if result.inversion_cached else ""
        self._say(f"edited in {time.perf_counter() - start:.1f} s ({moved}{reused})")
        return edited

    def _region_changes(self, strengths, device):
        """`edit_regions` changes of the moved sliders when one of them names a region, else [] (the joint edit)."""
        moved = [(n, s) for n, s in zip(self.names, strengths.tolist()) if s]
        if all(self.regions[n].value == JOINT for n, _ in moved):
            return []
        size, crop = self.config.image_size, self.config.crop
        changes = []
        for name, s in moved:
            where = self.regions[name].value
            region = None if where in (JOINT, OWN_MASK) else named_region(where, size, crop, self._layout).to(device)
            changes.append((name, int(s > 0), abs(s), region))
        return changes

    def _progress(self, done, total):
        self.progress.max, self.progress.value = total, done

    def _predict(self, images):
        """{name: (B,) probabilities} from the classifier."""
        from .classifier import predict  # only needed when a classifier is used
        probs = predict(self.classifier, images)
        return {name: probs[:, a] for a, name in enumerate(self.classifier.attribute_names)}

    def _reading_table(self, source, edited, strengths):
        """HTML table of the classifier's P(attribute) before and after, for the moved sliders it knows."""
        if self.classifier is None:
            return ""
        before, after = self._predict(source), self._predict(edited)
        rows = [f"<tr><td>{n}</td><td>{s:+.2f}</td><td>{before[n][0]:.2f}</td><td>{after[n][0]:.2f}</td></tr>"
                for n, s in zip(self.names, strengths.tolist()) if s and n in after]
        if not rows:
            return "<i>classifier: no moved slider to read</i>"
        return ("<table style='border-spacing: 10px 2px'>"
                "<tr><th>attribute</th><th>slider</th><th>P(source)</th><th>P(edited)</th></tr>"
                + "".join(rows) + "</table>")

    def _say(self, message, error=False, detail=None):
        colour = "#b00020" if error else "#333"
        text = f"<span style='color:{colour}'>{html.escape(message)}</span>"
        if detail:
            text += f"<details><summary>details</summary><pre>{html.escape(detail)}</pre></details>"
        self.status.value = text
