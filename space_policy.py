"""The hosted demo's limits: how much one visitor may ask of the Hugging Face Space and how much it
keeps. They are decisions for that machine, not for the library: ``portrait_stylize.ui`` takes each
as an argument (``None`` there means no limit) and ``app.py`` passes these. Running the demo on a
bigger machine means changing this file only.
"""

#: The Space hardware these limits are sized for (2 vCPUs, 16 GB): space.yaml's suggested_hardware
#: must name it (tests/front_ends/test_space.py), so moving the Space to other hardware means revisiting this file.
HARDWARE = "cpu-basic"

#: The style the demo opens on: the learned DCT-Net anime style (the Space reaches ModelScope), fetched
#: and converted in the background from start-up so the first click does not wait; where it cannot
#: be had (offline, or its fetch failed) the demo opens on the registry's built-in default instead.
FIRST_STYLE = "anime"

#: Jobs (face search, photo, video) running at once, all events together: one per vCPU, since
#: each job keeps a core busy and more at once would only slow every one of them down.
CONCURRENCY = 2
#: Jobs waiting behind those; beyond this a request is refused at once ("Queue is full") rather
#: than left waiting for minutes.
QUEUE_SIZE = 32

#: Largest upload Gradio accepts (25 MiB; the server answers a larger one with HTTP 413): ample
#: for a phone photo or a short clip, and it bounds what one upload costs in transfer and disk.
MAX_FILE_SIZE = "25mb"

#: The photo's longest side before stylizing unless the visitor picks another: results to view on a
#: screen, at a quarter of the pixels (and work) of the largest side offered.
DEFAULT_MAX_SIDE = 1024
#: What the "Max side" slider offers, in pixels (Gradio holds API callers to the same range): the
#: upper bound keeps any one request's work bounded on 2 vCPUs.
MAX_SIDE_RANGE = (256, 2048)

#: Clips are bounded by the work they need here, estimated from their first frames before anything
#: else runs (the Space does a 480p frame in about 0.3 s), so one clip cannot hold a worker for long.
MAX_VIDEO_WORK_SECONDS = 180.0
#: And by length, read from the file's header before any frame is decoded, so even the estimate of
#: an overlong clip costs nothing.
MAX_VIDEO_SECONDS = 60.0

#: Results kept for download; older ones are deleted as new ones arrive, bounding disk use over
#: the Space's lifetime.
MAX_RESULTS = 200
#: Gradio's own cache of uploads and outputs: files older than this many seconds are deleted, checked as often.
GRADIO_CACHE_SECONDS = 3600
