"""An interactive attribute editor for Jupyter (ipywidgets): pick a face or upload a photo, move signed sliders,
press Edit. This module is the view; `celebadiff.edit_session.EditSession` holds the state and runs the edit.

    source face (test image by index or thumbnail, or an uploaded photo: its largest face, found and aligned)
        + one slider per attribute, -3 "remove" .. 0 "keep" .. +3 "add"
        + beside each slider, where it may act: "joint" (one DiffEdit mask for every joint slider), its own
          DiffEdit mask, or a named region (mouth, eyes, hair, face, all; `celebadiff.regions`)
        --> EditSession.run --> editing.Editor.edit (in a background thread): the joint sliders as one change
            with per-attribute strengths, or, when a moved slider names a region, each moved slider its own
            change, strength and region
        --> source | edited | |edited - source| heat map, and the classifier's reading of the result
        --> for a photo: the photo before (with the face's box) and after (the edit pasted back)

The notebook, the CLI and this editor call the same `Editor`, so they give the same result for the same
settings; moving a slider and pressing Edit again reuses the face's inversion, reconstruction and mask.

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

from .data import CelebADataset, to_uint8
from .diffusion import NoiseSchedule
from .edit_session import JOINT, EditSession
from .models import load_model
from .photo import draw_boxes
from .regions import OWN_MASK, REGIONS
from .synthfaces import builtin_dataset
from .unet import UNKNOWN

SCALE = 4  # displayed images are upscaled this many times (nearest neighbour), so 32 px faces are visible
DIFF_GAIN = 4  # |edited - source| is amplified this much in the difference image
THUMBNAILS = 8  # faces in the thumbnail strip
STRENGTH = 3.0  # slider range: -STRENGTH (remove) .. +STRENGTH (add)
PHOTO_SIDE = 320  # an uploaded photo is shown at most this large
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


class AttributeEditor:
    """Edit faces with signed attribute sliders; display the editor as a cell's last expression.

    Args:
        model: the diffusion U-Net (eval mode); its device is used for the edit.
        schedule: its NoiseSchedule.
        config: its Config (attributes, image_size, crop).
        dataset: a CelebADataset with `attribute_names == config.attributes` and `size == config.image_size`.
        classifier: optional AttributeClassifier (celebadiff.classifier); reads the result and labels uploads.
        steps: the initial DDIM steps (25: a few seconds per edit for the 32 px demo model on a CPU).
        precision: the Editor's ("fp32", "bf16" or "auto").

    For tests and scripts: `run_edit()` edits synchronously with the current settings and returns the
    (1, 3, H, W) result; `busy`, `status` (HTML), `result`, `sliders` {name: FloatSlider}, `regions`
    {name: Dropdown of REGION_OPTIONS}, `mask` (where the last edit acted, (1, 1, S, S) or None), `edit_button`;
    after an edit of an uploaded photo, `pasted` is the whole photo edited (a `photo.Photo`). `session`
    holds the face and its edits (`edit_session.EditSession`).
    """

    def __init__(self, model, schedule, config, dataset, classifier=None, steps=25, precision="fp32"):
        self.session = EditSession(model, schedule, config, dataset, classifier, steps, precision)
        self.model, self.schedule, self.config = model, schedule, config
        self.dataset, self.classifier, self.names = dataset, classifier, list(config.attributes)
        self._lock, self._thread = threading.Lock(), None
        self._uploaded = False
        self._build(steps)
        self._show_dataset_face()

    @property
    def result(self):
        """The last edit, (1, 3, H, W) on the CPU, or None."""
        return None if self.session.result is None else self.session.result.edited

    @property
    def mask(self):
        """Where the last edit acted, (1, 1, S, S), or None (the whole face, or no edit yet)."""
        return self.session.mask

    @property
    def pasted(self):
        """The uploaded photo with the last edit pasted back (a `photo.Photo`), or None."""
        return self.session.pasted

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
        self._wire()
        self.widget = self._lay_out()
        self._turn_page(0)

    def _wire(self):
        self.index.observe(lambda _: self._show_dataset_face(), names="value")
        self.upload.observe(self._on_upload, names="value")
        for offset, pick in enumerate(self.picks):
            pick.on_click(lambda _, k=offset: self._pick(k))
        self.page_buttons[0].on_click(lambda _: self._turn_page(-1))
        self.page_buttons[1].on_click(lambda _: self._turn_page(+1))
        self.edit_button.on_click(self._on_edit_click)
        self.reset_button.on_click(lambda _: self.reset_sliders())

    def _lay_out(self):
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
        return widgets.VBox([
            widgets.HTML("<b>Source face</b>: a test image (slider or thumbnail), or upload a photo with a face"),
            widgets.HBox([self.index, self.upload]), strip, self.source_info,
            hint, widgets.HBox(columns),
            widgets.HBox([self.method, self.steps]), widgets.HBox([self.seed, self.reset_button]),
            widgets.HBox([self.edit_button, self.progress]), self.status, results, self.photo_row])

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
        self._uploaded = False
        self.photo_row.layout.display = "none"
        self.session.use_dataset_face(self.index.value)
        self._show_source()
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
            self.session.use_upload(upload["content"], name)
        except ValueError as err:
            self._say(str(err), error=True)
            return
        self._uploaded = True
        self._show_source()
        photo, crop = self.session.photo, self.session.crop
        boxed = draw_boxes(photo.rgb, [crop.box]) if crop.score is not None else photo.rgb
        self.photos["photo"].value = png(boxed, fit=PHOTO_SIDE)
        self.photos["photo_edited"].value = b""
        self.photo_row.layout.display = None
        self._mark_pick()

    def _show_source(self):
        session = self.session
        self.images["source"].value = png(to_uint8(session.x0[0]))
        self.images["edited"].value = self.images["difference"].value = b""
        self.reading.value = ""
        states = session.y_source[0].tolist()
        present = [n for n, s in zip(self.names, states) if s == 1]
        unknown = sum(s == UNKNOWN for s in states)
        text = f"<b>{html.escape(session.label)}</b> shows: {', '.join(present) or 'none of the attributes'}"
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
        strengths = {n: self.sliders[n].value for n in self.names}
        regions = {n: self.regions[n].value for n in self.names}
        source = self.session.x0  # the face may change while this runs
        self.progress.value = 0
        self._say(f"editing with {self.method.label}, {self.steps.value} steps ...")
        start = time.perf_counter()
        result = self.session.run(strengths, regions, self.method.value, self.steps.value, self.seed.value,
                                  callback=self._progress)
        shown = result.edited.clamp(-1, 1)  # strong edits overshoot [-1, 1]; show and judge the image as displayed
        self.images["edited"].value = png(to_uint8(shown[0]))
        self.images["difference"].value = png(difference_heat(source[0], shown[0]))
        self.reading.value = self._reading_table(source, shown, strengths)
        if self.session.pasted is not None:
            self.photos["photo_edited"].value = png(self.session.pasted.rgb, fit=PHOTO_SIDE)
        by_region = any(regions[n] != JOINT for n, s in strengths.items() if s)
        moved = ", ".join(f"{n} {s:+.2f}" + (f" in {self.regions[n].label}" if by_region else "")
                          for n, s in strengths.items() if s) or "no slider moved: this is the DDIM reconstruction"
        reused = "; the face's inversion reused" if result.inversion_cached else ""
        self._say(f"edited in {time.perf_counter() - start:.1f} s ({moved}{reused})")
        return result.edited

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
                for n, s in strengths.items() if s and n in after]
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
