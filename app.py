"""portrait-stylize web demo: a thin Gradio front end. What it shows and does is decided in
portrait_stylize.ui; the hosted demo's limits (sizes, clip lengths, queue) are in space_policy.py.

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

import gradio as gr

from portrait_stylize import ui

import space_policy

#: The public-domain photos in examples/ (a solo portrait, a second one, a two-face group).
EXAMPLES = [Path(__file__).parent / "examples" / name for name in ("astronaut.jpg", "group.jpg", "hopper.jpg")]
PRIVATE = {"api_visibility": "private", "queue": False}
#: Face search, photo and video jobs share one pool of space_policy.CONCURRENCY workers.
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
            style_image=None, progress=gr.Progress(track_tqdm=True)):  # noqa: B008 (how Gradio finds its tracker)
    """Stylize a portrait; regions/faces left empty mean everything; style_image is the reference
    of reference-based styles. Returns before/after, the region overlay, a PNG and a status line."""
    r = ui.run_photo(image, style, regions, strength, harmonize, region_strengths, face_backend or None,
                     int(max_side), faces or None, style_image, keep_results=space_policy.MAX_RESULTS)
    return (r.before, r.after), r.overlay, r.png, r.status


@_user_errors
def find_faces(image, face_backend, max_side):
    if image is None:
        return gr.update(value=[], visible=False), gr.update(choices=[], value=[], visible=False)
    thumbs, labels = ui.face_gallery(image, face_backend or None, int(max_side))
    many = len(labels) > 1
    return gr.update(value=thumbs, visible=many), gr.update(choices=labels, value=[], visible=many)


def describe_video(video, style, regions, strength, face_backend):
    """The line under an uploaded clip: its estimated work here, or why it is refused."""
    return ui.describe_video(video, style, regions, strength, face_backend,
                             max_seconds=space_policy.MAX_VIDEO_SECONDS,
                             max_work_seconds=space_policy.MAX_VIDEO_WORK_SECONDS)


@_user_errors
def stylize_video(video, style, regions, strength, face_backend, progress=gr.Progress()):  # noqa: B008 (as above)
    def report(done, total, estimate):
        left = (total - done) * estimate.seconds_per_frame
        progress(done / total, desc=f"frame {done}/{total}, about {left:.0f} s left")

    return ui.run_video(video, style, regions, strength, face_backend or None, progress=report,
                        max_seconds=space_policy.MAX_VIDEO_SECONDS,
                        max_work_seconds=space_policy.MAX_VIDEO_WORK_SECONDS, keep_results=space_policy.MAX_RESULTS)


def create_demo(max_side: int = space_policy.DEFAULT_MAX_SIDE, first_style: ui.FirstStyle | None = None) -> gr.Blocks:
    """The whole UI; queued: space_policy.CONCURRENCY jobs at a time over all heavy events, at most
    space_policy.QUEUE_SIZE waiting. It opens on ``first_style`` (default: space_policy.FIRST_STYLE,
    fetched in the background from now on; a built-in when that cannot be had)."""
    first_style = first_style or ui.FirstStyle(space_policy.FIRST_STYLE)
    style0 = first_style()
    cache_seconds = space_policy.GRADIO_CACHE_SECONDS
    with gr.Blocks(title="portrait-stylize", delete_cache=(cache_seconds, cache_seconds)) as demo:
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
                    regions = gr.CheckboxGroup(ui.regions_for(None), value=[],
                                               label="Regions (none ticked = the whole picture)")
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
                        side = gr.Slider(*space_policy.MAX_SIDE_RANGE, value=max_side, step=64, label="Max side (px)")
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
                    work_minutes = space_policy.MAX_VIDEO_WORK_SECONDS / 60
                    clip_info = gr.Markdown(f"Clips of up to {work_minutes:g} min of work here "
                                            "(estimated from the first frames when you upload).")
                clip_out = gr.Video(label="Stylized clip")
            run_clip = gr.Button("Stylize video", variant="primary")
        style.change(lambda name: (ui.style_markdown(name), gr.update(visible=ui.is_reference_style(name)),
                                    ui.style_preview(name)),
                     style, [info, reference, preview], **PRIVATE)
        # Each page opens on the first style (the built-in once its fetch has failed), labelled as
        # things stand now (a style downloaded since start-up no longer says it will download).
        demo.load(lambda: gr.update(choices=ui.style_choices(), value=first_style()), None, style, **PRIVATE)
        face_backend.change(_user_errors(lambda fb: gr.update(choices=ui.regions_for(fb or None), value=[])),
                            face_backend, regions, **PRIVATE)
        image.change(find_faces, [image, face_backend, side], [gallery, faces], api_visibility="private", **WORK)
        run.click(stylize, [image, style, regions, strength, harmonize, region_strengths, face_backend, side, faces,
                            reference], [result, overlay, png, status], api_name="stylize", **WORK)
        clip.upload(describe_video, [clip, style, regions, strength, face_backend], clip_info,
                    api_visibility="private", **WORK)
        run_clip.click(stylize_video, [clip, style, regions, strength, face_backend], clip_out,
                       api_visibility="private", **WORK)
    return demo.queue(default_concurrency_limit=space_policy.CONCURRENCY, max_size=space_policy.QUEUE_SIZE)


if __name__ == "__main__":
    create_demo().launch(max_file_size=space_policy.MAX_FILE_SIZE, show_error=True)
