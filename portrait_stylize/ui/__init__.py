"""What the web demo decides, so ``app.py`` stays thin: ``app.py`` lays out the Gradio widgets and
hands their raw values to these functions, which return what to show. Errors a user can cause come
out as :class:`UserError` with a plain-language message.

One job per module:

* ``catalogue``: what can be chosen (styles with labels, descriptions and previews, face backends,
  the regions each backend sees) and the stylizer for a choice.
* ``first_style``: the style the demo opens on (a learned one fetched in the background, or a built-in).
* ``uploads``: opening an uploaded photo, and the message for each kind of unusable upload.
* ``faces``: the face gallery of a group photo and the face picker's values.
* ``overlay``: the mask overlay (regions tinted, faces boxed).
* ``result_files``: the temporary files results are downloaded from, and their clean-up.
* ``idle``: memory back to the system when the last running request ends.
* ``photo`` and ``video``: the photo and video tabs' runs.
* ``errors``: :class:`UserError` and messages without temporary upload paths.

The hosted demo's limits (photo size, clip length and work, results kept, queue) are not decided
here: the functions take them as arguments, with ``None`` meaning no limit, and ``app.py`` passes
those of ``space_policy.py`` beside it.

May import: every library layer (this package sits at the top, beside ``cli``); nothing imports
``ui`` except ``app.py`` and the tests.
"""

from __future__ import annotations

from .catalogue import (
    default_style,
    face_backend_choices,
    is_reference_style,
    regions_for,
    style_choices,
    style_markdown,
    style_preview,
)
from .errors import UserError
from .faces import face_gallery
from .first_style import FirstStyle
from .photo import PhotoResult, run_photo
from .uploads import open_photo
from .video import describe_video, run_video

__all__ = ["FirstStyle", "PhotoResult", "UserError", "default_style", "describe_video", "face_backend_choices",
           "face_gallery", "is_reference_style", "open_photo", "regions_for", "run_photo", "run_video",
           "style_choices", "style_markdown", "style_preview"]
