"""The control panel of one browser (viser GUI elements scoped to that client): modes, the query form, selection
tools, edits and exports, and the training controls of a live run. Callbacks only forward to the session."""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..query.engine import DEFAULT_SIMILARITY, DEFAULT_THRESHOLD, NEGATIVE_MODES
from ..teachers.rebuild import text_aligned
from .paint import RGB, modes_for

if TYPE_CHECKING:
    from ..query.selection import Selection
    from .session import ClientSession

# the engine's modes (see QueryEngine.resolve_query; 'vocabulary' is 'auto' by another name) and the user's own
NEGATIVES = tuple(m for m in NEGATIVE_MODES if m != "vocabulary") + ("custom",)
HELP = ("**Click** the scene: point prompt. **Shift-drag**: box prompt. Results replace, add to or subtract from "
        "the selection (Combine).")


class ControlPanel:
    def __init__(self, session: "ClientSession"):
        from .session import COMBINE, LIFTS

        self.s = s = session
        gui = session.client.gui
        _, field = session.source.current()
        self.modes = modes_for(field)
        self._lifts = LIFTS
        with gui.add_folder("View"):
            self.mode = gui.add_dropdown("Mode", self.modes, initial_value=RGB,
                                         hint="what the image shows: colour, depth, feature PCA, relevancy of the "
                                              "query, or the selection")
            self.mode.on_update(lambda _: s.set_mode(self.mode.value))
            self.resolution = gui.add_slider("Max resolution", min=64, max=2048, step=16,
                                             initial_value=session.max_side,
                                             hint="longest side of a resting frame, in pixels (moving frames are "
                                                  "smaller, chosen from the measured render time)")
            self.resolution.on_update(lambda _: s.set_max_side(self.resolution.value))
            self.cameras = gui.add_checkbox("Training cameras", True, hint="click a frustum to look from it")
            self.cameras.on_update(lambda _: s.show_frustums(self.cameras.value))
            self.splats = gui.add_checkbox("Splats in browser", session.server.config.splats,
                                           hint="also send the Gaussians to the browser, which draws them itself "
                                                "while the camera moves (smooth, colour only)")
            self.splats.on_update(lambda _: s.set_splats(self.splats.value))
            self.frame = gui.add_markdown("waiting for the first frame")
            self.field = gui.add_markdown("")
        with gui.add_form("Ask in words") as form:
            self.query = gui.add_text("Query", "", hint="positives separated by ';' (e.g. 'mug; bowl'); Enter shows "
                                                        "their relevancy")
            self.negatives = gui.add_dropdown("Negatives", NEGATIVES, initial_value="auto",
                                              hint="auto: the query also scores as the scene labels it names "
                                                   "or is close to ('cup' as 'blue coffee mug'; several only for a "
                                                   "class word such as 'food', and of its labels those nearer it "
                                                   "than any broad category); the other labels + LERF's "
                                                   "canonical ones are negatives. vocabulary-generic, "
                                                   "vocabulary-window, vocabulary-z: "
                                                   "other matching rules; scene: without canonical; similar, words: "
                                                   "older rules; or your own phrases")
            self.custom = gui.add_text("Custom negatives", "", visible=False, hint="phrases separated by ';'")
            self.negatives.on_update(lambda _: setattr(self.custom, "visible", self.negatives.value == "custom"))
            self.threshold = gui.add_slider("Threshold", min=0.0, max=1.0, step=0.01,
                                            initial_value=DEFAULT_THRESHOLD,
                                            hint="relevancy above which a pixel or Gaussian counts (0.5: the query "
                                                 "beats every negative)")
            self.threshold.on_update(lambda _: s.set_threshold(self.threshold.value))
            teachers = [t for t in field.teacher_names if text_aligned(t)]
            self.teacher = gui.add_dropdown("Teacher", teachers, initial_value=teachers[0],
                                            hint="the text-aligned teacher that answers") if len(teachers) > 1 else None
            self.show = gui.add_button("Show relevancy")
        form.on_submit(lambda _: self.submit())
        self.show.on_click(lambda _: self.submit())
        with gui.add_folder("Select"):
            gui.add_markdown(HELP)
            self.combine_op = gui.add_dropdown("Combine", COMBINE, initial_value="replace")
            self.lift = gui.add_dropdown("Select by", list(LIFTS), initial_value=next(iter(LIFTS)),
                                         hint="3D selection of the query from each Gaussian's own feature, or from "
                                              "what it renders as over the training views")
            self.select = gui.add_button("Select query in 3D")
            self.select.on_click(lambda _: s.run("Select in 3D", lambda: s.select_3d(self._lifts[self.lift.value])))
            self.sim = gui.add_slider("Prompt similarity", min=0.0, max=1.0, step=0.01,
                                      initial_value=DEFAULT_SIMILARITY,
                                      hint="cosine to the clicked feature above which a pixel or Gaussian belongs")
            self.clear = gui.add_button("Clear selection")
            self.clear.on_click(lambda _: s.clear_selection())
            self.count = gui.add_markdown("nothing selected")
        with gui.add_folder("Edit and export"):
            editable = session.source.editable
            self.extract = gui.add_button("Extract", disabled=not editable, hint="keep only the selection")
            self.delete = gui.add_button("Delete", disabled=not editable, color="red", hint="remove the selection")
            self.colour = gui.add_rgb("Colour", (230, 40, 40))
            self.recolour = gui.add_button("Recolour", disabled=not editable, hint="paint the selection")
            self.extract.on_click(lambda _: s.run("Extract", lambda: s.edit("extract")))
            self.delete.on_click(lambda _: s.run("Delete", lambda: s.edit("delete")))
            self.recolour.on_click(lambda _: s.run("Recolour", lambda: s.edit(
                "recolour", tuple(c / 255 for c in self.colour.value))))
            self.points = gui.add_button("Export points.ply", hint="the selection as a point cloud with normals")
            self.relevancy = gui.add_button("Export relevancy.ply", hint="every Gaussian with its relevancy to the "
                                                                        "query")
            self.shot = gui.add_button("Screenshot", hint="this view at full resolution, as PNG")
            self.points.on_click(lambda _: s.run("Export points", s.export_points))
            self.relevancy.on_click(lambda _: s.run("Export relevancy", s.export_relevancy))
            self.shot.on_click(lambda _: s.run("Screenshot", s.screenshot))
            self.written = gui.add_markdown(f"edits and exports go to `{session.server.out}`" if editable else
                                            "edits: after training (open the checkpoint in ff-view)")
        self.training = None
        if session.source.live:
            with gui.add_folder("Training"):
                self.training = gui.add_markdown(session.source.status())
                self.pause = gui.add_button("Pause training")
                self.pause.on_click(lambda _: session.source.toggle_pause())
        self.show_field()

    # ---- reading the panel ----------------------------------------------------------------------------------
    def submit(self) -> None:
        neg = self.negatives.value if self.negatives.value != "custom" else self.custom.value
        teacher = self.teacher.value if self.teacher is not None else None
        text, thr = self.query.value, self.threshold.value
        self.s.run("Query", lambda: self.s.submit_query(text, neg, thr, teacher))

    def combine(self) -> str:
        return self.combine_op.value

    def similarity(self) -> float:
        return float(self.sim.value)

    # ---- showing state --------------------------------------------------------------------------------------
    def show_mode(self, mode: str) -> None:
        if mode in self.modes and self.mode.value != mode:
            self.mode.value = mode

    def show_selection(self, sel: "Selection | None", how: str) -> None:
        self.count.content = "nothing selected" if sel is None else f"**{sel.count:,}** Gaussians selected: {how}"

    def show_frame(self, view, seconds: float, moving: bool, fps: float) -> None:
        state = f"moving, {fps:.1f} frames/s" if moving else "at rest"
        self.frame.content = f"{view.width}x{view.height} in {seconds * 1000:.0f} ms ({state})"

    def show_field(self) -> None:
        self.field.content = f"field: {self.s.source.status()}"
        editable = self.s.source.editable
        if editable == self.extract.disabled:  # a training run becomes editable when it is done
            for button in (self.extract, self.delete, self.recolour):
                button.disabled = not editable
            if editable:
                self.written.content = f"edits and exports go to `{self.s.server.out}`"
        if self.training is not None:
            self.training.content = self.s.source.status()
            self.pause.label = "Resume training" if self.s.source.paused else "Pause training"

    def show_written(self, text: str) -> None:
        self.written.content = text
