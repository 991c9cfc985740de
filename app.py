"""portrait-stylize web demo: a thin Gradio front end; every decision lives in portrait_stylize.ui.

Run locally with `python app.py` (http://127.0.0.1:7860; GRADIO_SERVER_NAME / GRADIO_SERVER_PORT
change it) or as a Hugging Face Space (space.yaml). Analytics and Hub telemetry stay off unless
you set GRADIO_ANALYTICS_ENABLED / HF_HUB_DISABLE_TELEMETRY yourself.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import gradio as gr  # noqa: E402

from portrait_stylize import ui  # noqa: E402

MAX_FILE_SIZE = "25mb"
#: The public-domain photos in examples/ (a solo portrait, a second one, a two-face group).
EXAMPLES = [Path(__file__).parent / "examples" / name for name in ("astronaut.jpg", "group.jpg", "hopper.jpg")]
CONCURRENCY, QUEUE_SIZE = 2, 32
PRIVATE = {"api_visibility": "private", "queue": False}
#: Face search, photo and video jobs share one pool of CONCURRENCY workers (a 2-core Space).
WORK = {"concurrency_id": "work"}


def _user_errors(fn):
    """Library UserErrors become gr.Error: a plain message in the UI, never a crash."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ui.UserError as exc:
            raise gr.Error(str(exc), print_exception=False) from None
    return wrapper


class PhotoInput(gr.Image):
    """gr.Image that hands the uploaded file to ui unopened: ui.open_photo then says which kind of
    problem a bad upload has (empty, not a picture, damaged, too many pixels) and what to do."""

    def get_block_name(self) -> str:
        return "image"  # the browser renders it with gr.Image's front-end component

    def preprocess(self, payload):
        if payload is not None and payload.path is not None:
            return payload.path
        return super().preprocess(payload)  # nothing uploaded, or an inline data: URL


@_user_errors
def stylize(image, style, regions, strength, harmonize, region_strengths, face_backend, max_side, faces,
            style_image=None, progress=gr.Progress(track_tqdm=True)):
    """Stylize a portrait; regions/faces left empty mean everything; style_image is the reference
    of reference-based styles. Returns before/after, the region overlay, a PNG and a status line."""
    r = ui.run_photo(image, style, regions, strength, harmonize, region_strengths, face_backend or None,
                     int(max_side), faces or None, style_image)
    return (r.before, r.after), r.overlay, r.png, r.status


@_user_errors
def find_faces(image, face_backend, max_side):
    if image is None:
        return gr.update(value=[], visible=False), gr.update(choices=[], value=[], visible=False)
    thumbs, labels = ui.face_gallery(image, face_backend or None, int(max_side))
    many = len(labels) > 1
    return gr.update(value=thumbs, visible=many), gr.update(choices=labels, value=[], visible=many)


@_user_errors
def stylize_video(video, style, regions, strength, face_backend, progress=gr.Progress()):
    def report(done, total, estimate):
        left = (total - done) * estimate.seconds_per_frame
        progress(done / total, desc=f"frame {done}/{total}, about {left:.0f} s left")

    return ui.run_video(video, style, regions, strength, face_backend or None, progress=report)


def create_demo(max_side: int = ui.DEFAULT_MAX_SIDE) -> gr.Blocks:
    """The whole UI; queued: CONCURRENCY jobs at a time over all heavy events, at most QUEUE_SIZE waiting."""
    style0 = ui.default_style()
    # Gradio's own cache of uploads and outputs: files older than an hour go, checked hourly.
    with gr.Blocks(title="portrait-stylize", delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# portrait-stylize\nTurn a portrait into art — all of it, or only the regions you tick.")
        with gr.Tab("Photo"):
            with gr.Row():
                with gr.Column():
                    image = PhotoInput(label="Portrait", type="filepath", image_mode=None,
                                     sources=["upload", "webcam", "clipboard"])
                    with gr.Row():
                        style = gr.Dropdown(ui.style_choices(), value=style0, label="Style", scale=3)
                        preview = gr.Image(ui.style_preview(style0), label="Preview", type="pil", height=120,
                                           interactive=False, buttons=[], scale=1)
                    info = gr.Markdown(ui.style_markdown(style0))
                    reference = gr.Image(label="Style reference (reference-based styles)", type="filepath",
                                         visible=ui.is_reference_style(style0))
                    regions = gr.CheckboxGroup(ui.regions_for(None), value=[], label="Regions (none ticked = the whole picture)")
                    strength = gr.Slider(0, 1, value=1, step=0.05, label="Strength")
                    gallery = gr.Gallery(label="Faces found", columns=6, height=160, visible=False)
                    # A dropdown that takes any value, so API callers can pick faces without first
                    # running the face search that fills in the choices for the browser.
                    faces = gr.Dropdown([], value=[], multiselect=True, allow_custom_value=True,
                                        label="Faces to stylize (none picked = all)", visible=False)
                    with gr.Accordion("Advanced", open=False):
                        harmonize = gr.Slider(0, 1, value=0, step=0.05, label="Harmonize untouched colours")
                        region_strengths = gr.Textbox("", label="Per-region strength", placeholder="lips=0.5, hair=0.8")
                        face_backend = gr.Dropdown(ui.face_backend_choices(), value="auto", label="Face backend",
                                                   info="facexlib is listed once its weights are on disk "
                                                        "(docs/regions.md)")
                        side = gr.Slider(256, 2048, value=max_side, step=64, label="Max side (px)")
                    run = gr.Button("Stylize", variant="primary")
                with gr.Column():
                    result = gr.ImageSlider(label="Before / after", type="pil", format="png")
                    overlay = gr.Image(label="Mask overlay", type="pil")
                    gr.Markdown("Overlay: ticked regions in colour, faces found boxed (green: stylized).")
                    png = gr.File(label="Download PNG")
                    status = gr.Markdown(label="Status")
            gr.Examples([[str(path)] for path in EXAMPLES], inputs=[image],
                        label="Examples (public domain: examples/README.md)")
        with gr.Tab("Video"):
            with gr.Row():
                with gr.Column():
                    clip = gr.Video(label="Clip (audio is kept)", sources=["upload"])
                    clip_info = gr.Markdown(f"Clips of up to {ui.MAX_VIDEO_WORK_SECONDS / 60:g} min of work here "
                                            "(estimated from the first frames when you upload).")
                clip_out = gr.Video(label="Stylized clip")
            run_clip = gr.Button("Stylize video", variant="primary")
        style.change(lambda name: (ui.style_markdown(name), gr.update(visible=ui.is_reference_style(name)),
                                    ui.style_preview(name)),
                     style, [info, reference, preview], **PRIVATE)
        face_backend.change(_user_errors(lambda fb: gr.update(choices=ui.regions_for(fb or None), value=[])),
                            face_backend, regions, **PRIVATE)
        image.change(find_faces, [image, face_backend, side], [gallery, faces], api_visibility="private", **WORK)
        run.click(stylize, [image, style, regions, strength, harmonize, region_strengths, face_backend, side, faces,
                            reference], [result, overlay, png, status], api_name="stylize", **WORK)
        clip.upload(ui.describe_video, [clip, style, regions, strength, face_backend], clip_info,
                    api_visibility="private", **WORK)
        run_clip.click(stylize_video, [clip, style, regions, strength, face_backend], clip_out,
                       api_visibility="private", **WORK)
    return demo.queue(default_concurrency_limit=CONCURRENCY, max_size=QUEUE_SIZE)


if __name__ == "__main__":
    create_demo().launch(max_file_size=MAX_FILE_SIZE, show_error=True)
